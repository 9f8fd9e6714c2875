package seglog

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned, not wrapped, by operations on a closed Log.
	ErrClosed = errors.New("seglog: log is closed")

	// ErrOutOfRange is returned, not wrapped, by Read and ReadBatch for an
	// offset below First() or at or above Next().
	ErrOutOfRange = errors.New("seglog: offset out of range")

	// ErrRecordTooLarge is returned (wrapped) by Append and AppendAsync
	// when a payload is larger than Options.MaxRecordBytes. Nothing of the
	// batch is written.
	ErrRecordTooLarge = errors.New("seglog: record too large")

	// ErrCorrupt matches every *CorruptionError via errors.Is.
	ErrCorrupt = errors.New("seglog: corrupt record")

	// ErrFailed is matched by the error returned to every append of a
	// group whose write, fsync or segment roll failed, and by every append
	// after that: the log refuses further appends and must be reopened.
	ErrFailed = errors.New("seglog: log is failed; reopen")
)

// CorruptionError reports a record that failed validation: a CRC or offset
// mismatch, an impossible length, or a record extending past the end of
// the data. It matches ErrCorrupt.
type CorruptionError struct {
	Path     string // segment file
	Position int64  // byte position of the record header in Path
	Offset   uint64 // offset the record at Position was expected to have
	Reason   string
}

// Error names the file, the byte position and the reason.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("seglog: corrupt record in %s at byte %d (expected offset %d): %s",
		e.Path, e.Position, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// failedError builds the sticky error of a failed log from its cause.
func failedError(cause error) error {
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}
