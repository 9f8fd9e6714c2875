package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/client/internal/boltcommit"
	bolt "go.etcd.io/bbolt"
)

// Errors returned by the inbox.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("inbox: closed")
	// ErrNotFound is returned by Retry and Delete for an unknown id.
	ErrNotFound = errors.New("inbox: no such entry")
	// ErrFull is returned by the Handler when MaxPending entries are
	// pending: the message is nacked and stays with the broker.
	ErrFull = errors.New("inbox: full")
)

// Option configures Open.
type Option func(*options)

type options struct {
	concurrency    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	maxAttempts    int
	maxPending     int
	onError        func(error)
	lockTimeout    time.Duration
	now            func() time.Time // the clock; tests replace it
}

// Concurrency sets how many business handlers run at once (default 1).
func Concurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// InitialBackoff sets the wait after the first failure (default 1s); each
// further failure doubles it, up to MaxBackoff.
func InitialBackoff(d time.Duration) Option { return func(o *options) { o.initialBackoff = d } }

// MaxBackoff bounds the wait between attempts (default 5m).
func MaxBackoff(d time.Duration) Option { return func(o *options) { o.maxBackoff = d } }

// MaxAttempts sets after how many failed runs an entry is moved to state
// Failed and no longer retried until Retry (default 0: retried forever).
func MaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// MaxPending bounds the pending entries: beyond it the Handler returns
// ErrFull, so the broker keeps the message and redelivers it later (default
// 0: unbounded). Each refusal is a failed delivery for the broker, so its
// retry schedule applies, and so does its max attempts, after which the
// message goes to the group's dead letters.
func MaxPending(n int) Option { return func(o *options) { o.maxPending = n } }

// OnError receives errors the inbox cannot return to a caller: a failed
// write of an attempt's outcome, a failed read of due entries. Business
// handler failures are not reported here; List shows them.
func OnError(f func(error)) Option { return func(o *options) { o.onError = f } }

// Inbox is a local, durable inbox of messages and the workers that run the
// business handler on them. Its methods are safe for concurrent use.
type Inbox struct {
	db      *bolt.DB
	commit  *boltcommit.Committer
	path    string
	opts    options
	handler client.Handler

	// ctx is passed to business handlers; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// wake, with room for one signal, tells the dispatcher that an entry
	// was stored or retried.
	wake chan struct{}
	// work carries due entries from the dispatcher to the workers; it has
	// room for one per worker, and the dispatcher never hands out more
	// than there are idle workers, so sending never blocks.
	work chan *Entry
	// finished carries ids of entries whose outcome was written back to
	// the dispatcher; sized like work, so workers never block on it.
	finished chan string
	quit     chan struct{} // closed by Close: the dispatcher stops
	running  atomic.Int32  // business handlers running now

	dispatcher sync.WaitGroup
	workers    sync.WaitGroup
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
}

// Open opens the inbox in the file at path, creating it if needed, and
// starts running h on its entries, beginning with those a previous process
// left. A file can be open in one Inbox at a time; Open fails after a second
// if another one (or another process) has it.
func Open(path string, h client.Handler, opts ...Option) (*Inbox, error) {
	o := options{
		concurrency: 1, initialBackoff: time.Second, maxBackoff: 5 * time.Minute,
		onError: func(error) {}, lockTimeout: time.Second, now: time.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	o.concurrency = max(o.concurrency, 1)
	if o.initialBackoff <= 0 || o.maxBackoff < o.initialBackoff {
		return nil, fmt.Errorf("open inbox %s: backoff from %s to %s: want 0 < initial <= max", path, o.initialBackoff, o.maxBackoff)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open inbox %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open inbox %s: create buckets: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ib := &Inbox{
		db: db, commit: boltcommit.New(db, ErrClosed), path: path, opts: o, handler: h,
		ctx: ctx, cancel: cancel,
		wake:     make(chan struct{}, 1),
		work:     make(chan *Entry, o.concurrency),
		finished: make(chan string, o.concurrency),
		quit:     make(chan struct{}),
	}
	for i := 0; i < o.concurrency; i++ {
		ib.workers.Add(1)
		go func() {
			defer ib.workers.Done()
			ib.workLoop()
		}()
	}
	ib.dispatcher.Add(1)
	go func() {
		defer ib.dispatcher.Done()
		ib.dispatchLoop()
	}()
	return ib, nil
}

// Handler returns the handler to subscribe with: it stores each message
// durably and returns nil, so that the SDK acks it; it returns an error, so
// that the broker redelivers the message, only if the message could not be
// stored. A message already in the inbox (a redelivery) is not stored twice.
func (ib *Inbox) Handler() client.Handler {
	return func(_ context.Context, m *client.Message) error {
		if err := ib.put(m); err != nil {
			return fmt.Errorf("store message %s of %s in inbox %s: %w", m.ID, m.Topic, ib.path, err)
		}
		return nil
	}
}

// Close stops the inbox: no handler starts any more, running handlers get
// their context canceled and are waited for, and the file is closed.
// Entries not processed stay in the file for the next Open. A handler that
// fails after Close began is not charged an attempt. Close the consumer
// feeding the inbox first. Close is safe to call twice.
func (ib *Inbox) Close() error {
	ib.closeOnce.Do(func() {
		ib.closed.Store(true)
		ib.cancel()
		close(ib.quit)
		ib.dispatcher.Wait()
		close(ib.work)
		ib.workers.Wait()
		ib.commit.Close()
		if err := ib.db.Close(); err != nil {
			ib.closeErr = fmt.Errorf("close inbox %s: %w", ib.path, err)
		}
	})
	return ib.closeErr
}

// notify wakes the dispatcher without blocking.
func (ib *Inbox) notify() {
	select {
	case ib.wake <- struct{}{}:
	default:
	}
}

// backoff is the wait after the n-th failed attempt (n >= 1).
func (ib *Inbox) backoff(n int) time.Duration {
	d := ib.opts.initialBackoff
	for i := 1; i < n && d < ib.opts.maxBackoff; i++ {
		d *= 2
	}
	return min(d, ib.opts.maxBackoff)
}
