package client

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrOutcomeUnknown is matched (errors.Is) by the error of a publish that may or may not
// be stored: one whose retries were spent (ErrRetriesExhausted), and one whose last
// attempt was refused (disk full, for example) after an earlier attempt failed in a way
// that leaves it open whether the broker stored it. Such an error's code is Unavailable,
// and the message may be published again with the same client message id: the broker's
// duplicate window stores it at most once.
var ErrOutcomeUnknown = errors.New("dmq: outcome unknown")

// unknownOutcome is a refusal that followed an ambiguous failure: the refusal says the
// last attempt stored nothing, not that an earlier one did not.
type unknownOutcome struct {
	st    *status.Status
	cause error
}

// outcomeUnknown returns err, a final refusal, as the error of a publish whose earlier
// attempt may have been stored.
func outcomeUnknown(err error) error {
	if errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	return &unknownOutcome{
		st:    status.New(codes.Unavailable, "outcome unknown: an earlier attempt may have been stored (publish it again with the same client message id); the last one was refused: "+status.Convert(err).Message()),
		cause: err,
	}
}

func (e *unknownOutcome) Error() string              { return e.st.Err().Error() }
func (e *unknownOutcome) GRPCStatus() *status.Status { return e.st }
func (e *unknownOutcome) Is(target error) bool       { return target == ErrOutcomeUnknown }
func (e *unknownOutcome) Unwrap() error              { return e.cause }
