package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// interrupted is the error of a command that SIGINT or SIGTERM stopped: it
// exits with 128 plus the signal's number (130, 143), as shells report a
// process a signal ended.
type interrupted struct{ sig syscall.Signal }

func (e interrupted) Error() string {
	if e.sig == syscall.SIGINT {
		return "stopped by SIGINT"
	}
	return "stopped by SIGTERM"
}

// exitCode is the exit status of a command that failed with err.
func exitCode(err error) int {
	var in interrupted
	if errors.As(err, &in) {
		return 128 + int(in.sig)
	}
	return 1
}

// interruptible returns a context that SIGINT or SIGTERM cancels with an
// interrupted cause (see interruption), for a command that stops on them
// cleanly (pub, sub). After the first such signal the default action is back:
// a second one ends the process at once. stop releases the signals.
func interruptible(parent context.Context) (ctx context.Context, stop func()) {
	// Not parent's cancellation: Main's context ends on the same signals, without
	// saying which.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(interrupted{sig: s.(syscall.Signal)})
			signal.Reset(os.Interrupt, syscall.SIGTERM)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// interruption returns the interrupted error that ended ctx (from
// interruptible), or nil.
func interruption(ctx context.Context) error {
	var in interrupted
	if errors.As(context.Cause(ctx), &in) {
		return in
	}
	return nil
}
