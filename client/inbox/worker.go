package inbox

import (
	"fmt"
	"time"
)

// readRetry is the wait before reading due entries again after a read failed.
const readRetry = time.Second

// dispatchLoop hands due entries to idle workers until Close. It wakes when
// an entry is stored or retried (wake), when a worker finished an entry
// (finished), and when the earliest pending entry falls due (timer). It
// owns the set of running entries, so that it never hands out one twice.
func (ib *Inbox) dispatchLoop() {
	running := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Duration(-1) // until woken
		if free := ib.opts.concurrency - len(running); free > 0 {
			now := ib.opts.now()
			due, next, err := ib.dueEntries(now, free, running)
			switch {
			case err != nil:
				ib.opts.onError(err)
				wait = readRetry
			case !next.IsZero():
				wait = max(next.Sub(now), 0)
			}
			for _, e := range due {
				running[e.ID] = true
				ib.work <- e // never blocks: a slot per idle worker
			}
		}
		// Since Go 1.23 Stop and Reset discard a pending fire, so the
		// timer never wakes the loop for a deadline it replaced.
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ib.quit:
			return
		case <-ib.wake:
		case id := <-ib.finished:
			delete(running, id)
		case <-timer.C:
		}
	}
}

// workLoop runs the business handler on entries from the dispatcher and
// writes back the outcome, until Close closed work. Entries queued when
// Close began are left for the next Open.
func (ib *Inbox) workLoop() {
	for e := range ib.work {
		if ib.ctx.Err() == nil {
			ib.process(e)
		}
		ib.finished <- e.ID
	}
}

// process runs the handler on e once and records the outcome.
func (ib *Inbox) process(e *Entry) {
	ib.running.Add(1)
	err := ib.call(e)
	ib.running.Add(-1)
	switch {
	case err == nil:
		err = ib.succeeded(e)
	case ib.ctx.Err() != nil:
		// Close interrupted it: not the handler's failure. The entry stays
		// due and runs at the next Open.
		return
	default:
		err = ib.failed(e, err)
	}
	if err != nil {
		ib.opts.onError(err)
	}
}

// call runs the business handler, turning a panic into an error.
func (ib *Inbox) call(e *Entry) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return ib.handler(ib.ctx, e.message())
}
