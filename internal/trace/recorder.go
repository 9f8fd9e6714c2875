// Package trace records the life of messages — published, delivered,
// acked, nacked, timed out, dead-lettered, redriven, scheduled, due,
// cancelled — without slowing the paths that produce the events: events go
// to an in-memory buffer and a background loop writes them to the metadata
// store in batches every FlushInterval. A publish batch, a delivery run or
// an ack run is one event covering consecutive offsets, not one per
// message. When the buffer is full, events are dropped and counted: the
// trace is an operator's tool and must never hold back the queue.
package trace

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/internal/meta"
)

// Event kinds.
const (
	Published    = "published"
	Delivered    = "delivered"
	Acked        = "acked"
	Nacked       = "nacked"
	TimedOut     = "timed out"
	Disconnected = "consumer disconnected"
	DeadLettered = "dead-lettered"
	Redriven     = "redriven"
	Scheduled    = "scheduled"
	Due          = "due"
	Cancelled    = "cancelled"
)

// Store is where events are written (the metadata store).
type Store interface {
	PutTrace([]meta.TraceEvent, []meta.TraceKeyEntry) error
}

// Config configures a Recorder.
type Config struct {
	// FlushInterval is how often buffered events are written (default 200 ms).
	FlushInterval time.Duration
	// MaxBuffered bounds the events held between flushes (default 200,000).
	MaxBuffered int
	Logger      *slog.Logger
}

// Recorder buffers and writes trace events.
type Recorder struct {
	store Store
	cfg   Config
	seq   atomic.Uint64
	quit  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	events  []meta.TraceEvent
	keys    []meta.TraceKeyEntry
	dropped uint64
}

// New returns a recorder; Run starts its flush loop.
func New(store Store, cfg Config) *Recorder {
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.MaxBuffered == 0 {
		cfg.MaxBuffered = 200_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{store: store, cfg: cfg, quit: make(chan struct{}), done: make(chan struct{})}
	r.seq.Store(uint64(time.Now().UnixNano()))
	return r
}

// Add buffers events (their Seq is assigned here).
func (r *Recorder) Add(events ...meta.TraceEvent) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events)+len(events) > r.cfg.MaxBuffered {
		r.dropped += uint64(len(events))
		return
	}
	for _, e := range events {
		e.Seq = r.seq.Add(1)
		r.events = append(r.events, e)
	}
}

// AddKeys buffers business key index entries.
func (r *Recorder) AddKeys(keys ...meta.TraceKeyEntry) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys)+len(keys) > r.cfg.MaxBuffered {
		r.dropped += uint64(len(keys))
		return
	}
	r.keys = append(r.keys, keys...)
}

// Run writes buffered events every FlushInterval until Stop.
func (r *Recorder) Run() {
	defer close(r.done)
	tick := time.NewTicker(r.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.quit:
			r.Flush()
			return
		case <-tick.C:
			r.Flush()
		}
	}
}

// Flush writes what is buffered now.
func (r *Recorder) Flush() {
	r.mu.Lock()
	events, keys, dropped := r.events, r.keys, r.dropped
	r.events, r.keys, r.dropped = nil, nil, 0
	r.mu.Unlock()
	if dropped > 0 {
		r.cfg.Logger.Warn("trace buffer full; events dropped", "dropped", dropped)
	}
	if len(events) == 0 && len(keys) == 0 {
		return
	}
	events = coalesce(events)
	if err := r.store.PutTrace(events, keys); err != nil {
		r.cfg.Logger.Error("write trace events", "events", len(events), "err", err)
	}
}

// Stop writes what is left and ends Run.
func (r *Recorder) Stop() {
	close(r.quit)
	<-r.done
}

// coalesce merges runs that continue each other — the same step for the
// same topic, group and client, offsets adjacent — into one event, so a
// consumer acking in small batches costs a few records per flush, not one
// per batch. A merged run keeps a time that leaves every message's events
// in causal order: the earliest time (and record order) for publishes,
// which come first, the latest for acks, which come last. Deliveries are
// merged only within one millisecond: a delivery follows its message's
// publish, and the earlier time of a run delivered before could precede the
// publish of a message in a later run (traces showed "delivered" before
// "published"); a later time could follow an ack.
func coalesce(events []meta.TraceEvent) []meta.TraceEvent {
	type stream struct {
		kind, topic, group, client, addr string
		attempt                          uint32
	}
	last := map[stream]int{} // index in out of the stream's last run
	out := events[:0]
	for _, e := range events {
		if e.Count == 0 || (e.Kind != Published && e.Kind != Delivered && e.Kind != Acked) {
			out = append(out, e)
			continue
		}
		k := stream{e.Kind, e.Topic, e.Group, e.Client, e.Addr, e.Attempt}
		if i, ok := last[k]; ok {
			p := &out[i]
			if p.Offset+uint64(p.Count) == e.Offset && p.Count+e.Count <= meta.MaxTraceRun && (e.Kind != Delivered || p.TimeMs == e.TimeMs) {
				p.Count += e.Count
				if e.Kind == Acked {
					p.TimeMs, p.Seq = max(p.TimeMs, e.TimeMs), max(p.Seq, e.Seq)
				} else {
					p.TimeMs = min(p.TimeMs, e.TimeMs)
				}
				continue
			}
		}
		last[k] = len(out)
		out = append(out, e)
	}
	return out
}
