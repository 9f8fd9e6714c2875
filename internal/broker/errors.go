package broker

import (
	"errors"
	"fmt"
)

// Kind classifies a broker error so the API layer can map it to a wire
// status (gRPC codes) without parsing messages.
type Kind int

// Error kinds. Each maps to exactly one gRPC status code in package rpc.
const (
	KindInternal     Kind = iota // a bug or an unexpected I/O failure
	KindInvalid                  // bad input: names, bodies, ids, credits
	KindNotFound                 // unknown topic or group
	KindExists                   // the object already exists
	KindPrecondition             // the object's state forbids the call
	KindExhausted                // a limit was hit or the disk is full
	KindUnavailable              // the broker is shutting down; retry elsewhere or later
	KindPermission               // the caller may not do this
)

// Error is an error with a Kind and a message meant for a person.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func wrap(kind Kind, err error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the Kind of err, KindInternal when it carries none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ErrClosed is returned by calls made after Close.
var ErrClosed = &Error{Kind: KindUnavailable, Msg: "broker is shutting down"}
