package broker

import (
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/seglog"
)

// dedupeWindow remembers the client message ids a topic stored recently so
// a retransmitted message is not stored twice. It is not persisted on its
// own: the ids are in the log records, and a restart rebuilds the window by
// reading the records published inside it (rebuildDedupe).
//
// Memory is bounded by maxIDs: beyond it the oldest ids are forgotten early
// (the window shrinks) and the broker logs it.
type dedupeWindow struct {
	window time.Duration
	maxIDs int

	mu      sync.Mutex
	ids     map[string]*dedupeEntry
	order   []dedupeRef // ids in the order they were stored, for expiry
	head    int         // order[:head] is expired
	evicted bool        // logged that the window was cut short
}

type dedupeEntry struct {
	res     PublishResult // where the first copy went (Duplicate unset)
	atMs    int64
	pending bool // its append is in progress; waiters want its outcome
	waiters []func(res PublishResult, err error)
}

type dedupeRef struct {
	id   string
	res  PublishResult
	atMs int64
}

func newDedupeWindow(window time.Duration, maxIDs int) *dedupeWindow {
	return &dedupeWindow{window: window, maxIDs: maxIDs, ids: make(map[string]*dedupeEntry)}
}

// expireLocked forgets ids older than the window, or beyond maxIDs.
func (d *dedupeWindow) expireLocked(nowMs int64) (cutShort bool) {
	limit := nowMs - d.window.Milliseconds()
	for d.head < len(d.order) {
		r := d.order[d.head]
		over := len(d.order)-d.head > d.maxIDs
		if r.atMs >= limit && !over {
			break
		}
		if over && r.atMs >= limit && !d.evicted {
			d.evicted, cutShort = true, true
		}
		if e := d.ids[r.id]; e != nil && !e.pending && e.res == r.res {
			delete(d.ids, r.id)
		}
		d.order[d.head] = dedupeRef{}
		d.head++
	}
	// Compact once half the slice is dead.
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
	return cutShort
}

// storedLocked records that id was stored as res.
func (d *dedupeWindow) storedLocked(id string, res PublishResult, atMs int64) {
	d.order = append(d.order, dedupeRef{id: id, res: res, atMs: atMs})
}

// PublishResult is the outcome for one published message.
type PublishResult struct {
	Offset uint64
	// DelayID is set instead of Offset for a delayed message.
	DelayID string
	// Duplicate is true when the topic already stored a message with the
	// same client message id inside its window; Offset or DelayID is that
	// message's.
	Duplicate bool
}

// publishPlan splits a batch into messages to store and duplicates.
type publishPlan struct {
	store    []int       // indexes of messages to store, in order
	sameAs   map[int]int // duplicate inside the batch: index → first index
	firstIdx map[string]int
}

// completion collects the parts of one publish (its append to the log, its
// delayed part, and the appends in progress it duplicates) and calls done
// once all finished.
type completion struct {
	mu      sync.Mutex
	parts   int
	err     error
	results []PublishResult
	sameAs  map[int]int // duplicates inside the batch: index → first index
	done    func([]PublishResult, error)
}

func (c *completion) finish(err error) {
	c.mu.Lock()
	if err != nil && c.err == nil {
		c.err = err
	}
	c.parts--
	last := c.parts == 0
	c.mu.Unlock()
	if !last {
		return
	}
	if c.err != nil {
		c.done(nil, c.err)
		return
	}
	for i, j := range c.sameAs {
		c.results[i] = c.results[j]
		c.results[i].Duplicate = true
	}
	c.done(c.results, nil)
}

// plan classifies msgs against the window, reserves the new ids as
// pending, and makes comp wait for appends in progress that msgs duplicate.
func (d *dedupeWindow) plan(msgs []*message.Message, nowMs int64, comp *completion) (p publishPlan, cutShort bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cutShort = d.expireLocked(nowMs)
	for i, m := range msgs {
		id := m.ClientMessageID
		if id == "" {
			p.store = append(p.store, i)
			continue
		}
		if j, ok := p.firstIdx[id]; ok {
			if p.sameAs == nil {
				p.sameAs = map[int]int{}
			}
			p.sameAs[i] = j
			continue
		}
		if e := d.ids[id]; e != nil {
			if !e.pending {
				comp.results[i] = e.res
				comp.results[i].Duplicate = true
				continue
			}
			comp.mu.Lock()
			comp.parts++
			comp.mu.Unlock()
			e.waiters = append(e.waiters, func(res PublishResult, err error) {
				comp.mu.Lock()
				comp.results[i] = res
				comp.results[i].Duplicate = true
				comp.mu.Unlock()
				comp.finish(err)
			})
			continue
		}
		d.ids[id] = &dedupeEntry{pending: true}
		if p.firstIdx == nil {
			p.firstIdx = map[string]int{}
		}
		p.firstIdx[id] = i
		p.store = append(p.store, i)
	}
	return p, cutShort
}

// settle records the outcome of storing msgs[idx[k]] as res[k] (or the
// failure err) and returns the waiters to notify, outside d.mu.
func (d *dedupeWindow) settle(msgs []*message.Message, idx []int, res []PublishResult, err error, nowMs int64) []func() {
	var notify []func()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, i := range idx {
		id := msgs[i].ClientMessageID
		if id == "" {
			continue
		}
		e := d.ids[id]
		if e == nil || !e.pending {
			continue
		}
		r := res[k]
		for _, w := range e.waiters {
			notify = append(notify, func() { w(r, err) })
		}
		if err != nil {
			delete(d.ids, id)
			continue
		}
		e.res, e.atMs, e.pending, e.waiters = r, nowMs, false, nil
		d.storedLocked(id, r, nowMs)
	}
	return notify
}

// rebuildDedupe fills the window from the log: the client message ids of
// messages published inside the window before a restart. Only segments
// written to inside the window are read.
func (t *topic) rebuildDedupe(now time.Time) error {
	d := t.dedupe
	sinceMs := now.Add(-d.window).UnixMilli()
	var from uint64
	found := false
	for _, s := range t.log.Segments() {
		if s.ModTime.UnixMilli() >= sinceMs {
			from, found = s.Base, true
			break
		}
	}
	if !found {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for off := max(from, t.log.First()); off < t.log.Next(); {
		ps, err := t.log.ReadBatch(off, 1024, 4<<20)
		if err != nil {
			if err == seglog.ErrOutOfRange {
				return nil
			}
			return err
		}
		for i, p := range ps {
			m, err := message.Decode(p)
			if err != nil {
				return err
			}
			if m.ClientMessageID != "" && m.PublishedAtMs >= sinceMs {
				r := PublishResult{Offset: off + uint64(i)}
				d.ids[m.ClientMessageID] = &dedupeEntry{res: r, atMs: m.PublishedAtMs}
				d.storedLocked(m.ClientMessageID, r, m.PublishedAtMs)
			}
		}
		off += uint64(len(ps))
	}
	d.expireLocked(now.UnixMilli())
	return nil
}
