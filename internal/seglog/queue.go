package seglog

import (
	"sync"
	"sync/atomic"
)

// queue is where appenders leave requests for the writer goroutine.
type queue struct {
	mu      sync.Mutex
	pending []*request // guarded by mu
	closed  bool       // guarded by mu

	// failed holds the sticky error of a failed log; nil while healthy.
	failed atomic.Pointer[error]

	// wake holds a token when the writer may have work: it is sent
	// (without blocking) when pending goes from empty to non-empty and on
	// close. The writer takes all of pending whenever it wakes.
	wake chan struct{}
}

// push queues r, unless the log is closed, or failed and r is not a
// recovery.
func (q *queue) push(r *request) error {
	q.mu.Lock()
	err := q.refusalLocked()
	if r.recover && err != ErrClosed {
		err = nil
	}
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.pending = append(q.pending, r)
	first := len(q.pending) == 1
	q.mu.Unlock()
	if first {
		// Later pushes find pending non-empty: the writer has not taken
		// it yet and will see their requests too.
		q.signal()
	}
	return nil
}

// refusal is the error an append gets now, if any.
func (q *queue) refusal() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.refusalLocked()
}

func (q *queue) refusalLocked() error {
	if q.closed {
		return ErrClosed
	}
	return q.failure()
}

// failure returns the sticky error of a failed log, or nil.
func (q *queue) failure() error {
	if p := q.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail makes the log failed, unless it already is, and returns the sticky
// error. The first failure wins.
func (q *queue) fail(cause error) (err error, first bool) {
	err = failedError(cause)
	if q.failed.CompareAndSwap(nil, &err) {
		return err, true
	}
	return q.failure(), false
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // a token is already there
	}
}

// take waits until requests are pending or the queue is closed, then
// returns all pending requests, leaving spare (emptied) as the new queue.
func (q *queue) take(spare []*request) (batch []*request, closed bool) {
	q.mu.Lock()
	for len(q.pending) == 0 && !q.closed {
		q.mu.Unlock()
		<-q.wake
		q.mu.Lock()
	}
	batch, q.pending = q.pending, spare[:0]
	closed = q.closed
	q.mu.Unlock()
	return batch, closed
}

// close makes the queue refuse new requests and wakes the writer, which
// drains what is queued and exits.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// empty says whether no request is waiting for the writer.
func (q *queue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) == 0
}
