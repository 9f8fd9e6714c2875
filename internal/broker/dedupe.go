package broker

import (
	"errors"
	"hash/maphash"
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
// Memory: an id is kept as a 128-bit hash (two independent 64-bit hashes;
// a false match among a million ids has a probability around 1e-27) with a
// 40-byte slot, about 100 bytes per id with the expiry queue, whatever the
// id's length. maxIDs bounds the count: beyond it the oldest ids are
// forgotten early (the window shrinks) and the broker logs it.
type dedupeWindow struct {
	window time.Duration
	maxIDs int
	seeds  [2]maphash.Seed

	mu      sync.Mutex
	stored  map[dedupeKey]dedupeSlot
	pending map[dedupeKey]*pendingID // ids whose first copy is being stored
	order   []dedupeRef              // stored ids in the order they were stored, for expiry
	head    int                      // order[:head] is expired
	evicted bool                     // logged that the window was cut short
}

// dedupeKey is the 128-bit hash of a client message id.
type dedupeKey [2]uint64

func (d *dedupeWindow) key(id string) dedupeKey {
	return dedupeKey{maphash.String(d.seeds[0], id), maphash.String(d.seeds[1], id)}
}

// dedupeSlot says where the first copy of an id went, compactly.
type dedupeSlot struct {
	offset  uint64 // log offset, or the sequence of a delayed message
	dueMs   int64  // due time of a delayed message, 0 for a log offset
	atMs    int64  // when it was stored
	delayed bool
}

func slotOf(r PublishResult, atMs int64) (dedupeSlot, error) {
	if r.DelayID == "" {
		return dedupeSlot{offset: r.Offset, atMs: atMs}, nil
	}
	due, seq, err := ParseDelayID(r.DelayID)
	return dedupeSlot{offset: seq, dueMs: due, atMs: atMs, delayed: true}, err
}

func (s dedupeSlot) result() PublishResult {
	if s.delayed {
		return PublishResult{DelayID: FormatDelayID(s.dueMs, s.offset), Duplicate: true}
	}
	return PublishResult{Offset: s.offset, Duplicate: true}
}

// pendingID is an id whose first copy is being stored; later copies wait.
type pendingID struct {
	waiters []func(res PublishResult, err error)
}

type dedupeRef struct {
	key  dedupeKey
	atMs int64
}

func newDedupeWindow(window time.Duration, maxIDs int) *dedupeWindow {
	return &dedupeWindow{
		window: window, maxIDs: maxIDs,
		seeds:   [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		stored:  make(map[dedupeKey]dedupeSlot),
		pending: make(map[dedupeKey]*pendingID),
	}
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
		if s, ok := d.stored[r.key]; ok && s.atMs == r.atMs {
			delete(d.stored, r.key)
		}
		d.head++
	}
	// Compact once half the slice is dead.
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
	return cutShort
}

// storeLocked records that the id with key k was stored as s.
func (d *dedupeWindow) storeLocked(k dedupeKey, s dedupeSlot) {
	d.stored[k] = s
	d.order = append(d.order, dedupeRef{key: k, atMs: s.atMs})
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
// pending, and makes comp wait for stores in progress that msgs duplicate.
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
		k := d.key(id)
		if s, ok := d.stored[k]; ok {
			comp.results[i] = s.result()
			continue
		}
		if pe := d.pending[k]; pe != nil {
			comp.mu.Lock()
			comp.parts++
			comp.mu.Unlock()
			pe.waiters = append(pe.waiters, func(res PublishResult, err error) {
				comp.mu.Lock()
				comp.results[i] = res
				comp.results[i].Duplicate = true
				comp.mu.Unlock()
				comp.finish(err)
			})
			continue
		}
		d.pending[k] = &pendingID{}
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
		key := d.key(id)
		pe := d.pending[key]
		if pe == nil {
			continue
		}
		delete(d.pending, key)
		r := res[k]
		for _, w := range pe.waiters {
			notify = append(notify, func() { w(r, err) })
		}
		if err != nil {
			continue
		}
		if slot, serr := slotOf(r, nowMs); serr == nil {
			d.storeLocked(key, slot)
		}
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
	// The window never holds more than maxIDs ids, so older records need
	// not be read: this bounds a restart's time and memory whatever the
	// log holds.
	start := max(from, t.log.First())
	if next := t.log.Next(); next-start > uint64(d.maxIDs) {
		start = next - uint64(d.maxIDs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for off := start; off < t.log.Next(); {
		ps, err := t.log.ReadBatch(off, 1024, 4<<20)
		if errors.Is(err, seglog.ErrCorrupt) {
			// A damaged record must not keep the broker from starting: its
			// readers get the error (naming the file and position) instead.
			// Only duplicates of the ids it held go undetected.
			t.b.logger.Warn("duplicate window: skipping a damaged segment; reading its damaged records fails", "topic", t.name, "err", err)
			if off = nextSegmentBase(t.log.Segments(), off); off == 0 {
				break
			}
			continue
		}
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
				d.storeLocked(d.key(m.ClientMessageID), dedupeSlot{offset: off + uint64(i), atMs: m.PublishedAtMs})
			}
		}
		off += uint64(len(ps))
		d.expireLocked(now.UnixMilli())
	}
	d.expireLocked(now.UnixMilli())
	return nil
}

// nextSegmentBase returns the base of the segment after the one holding
// off, or 0 when there is none.
func nextSegmentBase(segs []seglog.SegmentInfo, off uint64) uint64 {
	for _, s := range segs {
		if s.Base > off {
			return s.Base
		}
	}
	return 0
}
