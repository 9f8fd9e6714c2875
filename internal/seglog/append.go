package seglog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// States of a request; see Append for cancellation.
const (
	reqQueued int32 = iota
	reqTaken
	reqCanceled
)

// request is one queued Append or AppendAsync call.
type request struct {
	payloads [][]byte
	recover  bool         // a Recover call, not an append
	bytes    int64        // framed size of the batch
	state    atomic.Int32 // reqQueued, then reqTaken (writer) or reqCanceled (caller)
	first    uint64       // set by the writer when it encodes the batch

	// Completion: done for Append (first and err are set before the send),
	// cb for AppendAsync.
	done chan struct{}
	err  error
	cb   func(uint64, error)
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// complete reports the result of r. For AppendAsync it recycles r and runs
// the callback; for Append it wakes the caller, who recycles r.
func (r *request) complete(first uint64, err error) {
	if cb := r.cb; cb != nil {
		r.recycle()
		cb(first, err)
		return
	}
	r.first, r.err = first, err
	r.done <- struct{}{}
}

// recycle clears r and puts it back in the pool. The caller must be the
// last holder of r.
func (r *request) recycle() {
	r.payloads, r.cb, r.err, r.recover = nil, nil, nil, false
	requestPool.Put(r)
}

// Append writes payloads as consecutive records and returns the offset of
// the first. It returns once they are durable: written and, unless
// NoSync, fsynced. Concurrent calls are committed together (see the
// package documentation). The payloads are copied; the caller must not
// modify them until Append returns.
//
// If ctx is done before the writer has taken the batch, Append returns
// ctx.Err() and nothing is written; once the writer has taken it, Append
// waits for the outcome (one write and fsync). An empty batch writes
// nothing and returns Next(). Errors: ErrRecordTooLarge (nothing is
// written), ErrClosed, or an error matching ErrFailed if the log failed.
func (l *Log) Append(ctx context.Context, payloads [][]byte) (first uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := l.batchBytes(payloads)
	if err != nil || len(payloads) == 0 {
		return l.Next(), err
	}
	r := requestPool.Get().(*request)
	r.payloads, r.bytes = payloads, n
	r.state.Store(reqQueued)
	if err := l.q.push(r); err != nil {
		r.recycle()
		return 0, err
	}
	if done := ctx.Done(); done != nil {
		select {
		case <-r.done:
		case <-done:
			if r.state.CompareAndSwap(reqQueued, reqCanceled) {
				// The writer will skip r but may still hold it: r is
				// not recycled.
				return 0, ctx.Err()
			}
			<-r.done
		}
	} else {
		<-r.done
	}
	first, err = r.first, r.err
	r.recycle()
	return first, err
}

// AppendAsync is Append without waiting, for pipelined callers: it calls
// done(first, err) exactly once, from the log's internal goroutine once
// the batch is durable or has failed. Batches of one caller are committed
// in call order. If the batch is refused before being queued (too large,
// empty, log closed or failed) done is called before AppendAsync returns,
// on the caller's goroutine. done must not block for long, as it delays
// the completion of other appends, and must not call Append or Close,
// which would wait for the goroutine running it. The payloads must not be
// modified until done is called.
func (l *Log) AppendAsync(payloads [][]byte, done func(first uint64, err error)) {
	n, err := l.batchBytes(payloads)
	if err != nil || len(payloads) == 0 {
		done(l.Next(), err)
		return
	}
	r := requestPool.Get().(*request)
	r.payloads, r.bytes, r.cb = payloads, n, done
	r.state.Store(reqQueued)
	if err := l.q.push(r); err != nil {
		r.recycle()
		done(0, err)
	}
}

// batchBytes checks the payload sizes and returns the framed size of the
// batch. With an empty batch it reports whether the log accepts appends.
func (l *Log) batchBytes(payloads [][]byte) (int64, error) {
	var n int64
	for i, p := range payloads {
		if len(p) > l.opts.MaxRecordBytes {
			return 0, fmt.Errorf("%w: payload %d is %d bytes, limit %d", ErrRecordTooLarge, i, len(p), l.opts.MaxRecordBytes)
		}
		n += int64(recordSize(len(p)))
	}
	if len(payloads) == 0 {
		return 0, l.q.refusal()
	}
	return n, nil
}

// Recover makes a failed log accept appends again, once the cause (a full
// disk, a failing device) may have gone: it drops what failed writes left
// after the last durable record and fsyncs the active segment. Nothing
// that failed is ever made durable by it: those appends were reported as
// failed and their callers must send them again. It returns nil at once
// on a healthy log, ErrClosed on a closed one, and the error of the
// attempt if the log is still failed.
func (l *Log) Recover(ctx context.Context) error {
	r := requestPool.Get().(*request)
	r.recover = true
	r.state.Store(reqQueued)
	if err := l.q.push(r); err != nil {
		r.recycle()
		return err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqCanceled) {
			return ctx.Err()
		}
		<-r.done
	}
	err := r.err
	r.recycle()
	return err
}
