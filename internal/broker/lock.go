package broker

import (
	"errors"
	"syscall"
)

// isNoSpace reports whether err is a full-disk error.
func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
