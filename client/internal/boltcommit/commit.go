// Package boltcommit group-commits bbolt writes for the SDK's embedded
// stores (the idempotency store and the inbox).
package boltcommit

import (
	"errors"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by writes after Close, unless New was given another.
var ErrClosed = errors.New("store is closed")

// maxGroup bounds the writes committed in one transaction.
const maxGroup = 1000

// Committer runs write functions in as few bbolt transactions (and fsyncs)
// as possible: a transaction takes every write that arrived while the
// previous one was being committed (group commit). Unlike db.Batch, which
// waits up to 10 ms for company, a lone write starts at once, so a consumer
// with concurrency 1 pays one fsync per message and no more.
type Committer struct {
	db        *bolt.DB
	closedErr error
	reqs      chan commitRequest // unbuffered: a sent request is always answered
	quit      chan struct{}
	done      chan struct{}
}

type commitRequest struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// New starts a committer for db; Close stops it. Writes after Close fail
// with closedErr (ErrClosed when nil).
func New(db *bolt.DB, closedErr error) *Committer {
	if closedErr == nil {
		closedErr = ErrClosed
	}
	c := &Committer{db: db, closedErr: closedErr, reqs: make(chan commitRequest), quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// Write runs fn in a write transaction and returns once it is committed
// and fsynced. fn may run more than once (when a transaction shared with
// other writes fails, each is retried alone), so it must only write through
// its transaction.
func (c *Committer) Write(fn func(*bolt.Tx) error) error {
	req := commitRequest{fn: fn, done: make(chan error, 1)}
	select {
	case c.reqs <- req:
		return <-req.done
	case <-c.quit:
		return c.closedErr
	}
}

// Close stops the loop once the running commit finished. Later writes fail.
func (c *Committer) Close() {
	close(c.quit)
	<-c.done
}

// loop commits groups of writes until Close. It wakes on a write request;
// the requests that queued up during a commit form the next group.
func (c *Committer) loop() {
	defer close(c.done)
	group := make([]commitRequest, 0, maxGroup)
	for {
		group = group[:0]
		select {
		case <-c.quit:
			return
		case r := <-c.reqs:
			group = append(group, r)
		}
	fill:
		for len(group) < maxGroup {
			select {
			case r := <-c.reqs:
				group = append(group, r)
			default:
				break fill
			}
		}
		err := c.db.Update(func(tx *bolt.Tx) error {
			for _, r := range group {
				if err := r.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		for _, r := range group {
			if err != nil && len(group) > 1 {
				// One write failed and rolled the others back: retry each
				// alone so that only the failing one reports an error.
				r.done <- c.db.Update(r.fn)
				continue
			}
			r.done <- err
		}
	}
}
