package broker

import (
	"cmp"
	"errors"
	"hash/maphash"
	"slices"
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
// Memory: ids of the SDK's shape ("<prefix>-<counter>", see producerID) are
// kept as runs per producer, about 40 bytes per run of consecutive messages
// whatever their number. Other ids are kept one by one as a 128-bit hash
// (two independent 64-bit hashes; a false match among a million ids has a
// probability around 1e-27) with a 40-byte slot, about 100 bytes per id with
// the expiry queue, whatever the id's length. maxIDs bounds both the ids
// kept one by one and the runs: beyond it the oldest are forgotten early
// (the window shrinks) and the broker logs it.
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

	producers   map[string]*producerIDs // by id prefix
	runs        int                     // runs in producers
	recorded    uint64                  // ids recorded in runs so far (idRun.lastSeq)
	sweptMs     int64                   // when the runs were last expired
	waitingRuns map[string]*pendingID   // copies of ids reserved in producers, by id
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
		seeds:       [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		stored:      make(map[dedupeKey]dedupeSlot),
		pending:     make(map[dedupeKey]*pendingID),
		producers:   make(map[string]*producerIDs),
		waitingRuns: make(map[string]*pendingID),
	}
}

// entries is how many ids are kept one by one plus how many runs.
func (d *dedupeWindow) entries() int {
	return len(d.stored) + d.runs
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
	// Runs are swept about once a second, or at once when there are too many.
	if nowMs-d.sweptMs >= 1000 || d.runs > d.maxIDs {
		if d.sweepRunsLocked(limit) {
			cutShort = true
		}
		d.sweptMs = nowMs
	}
	return cutShort
}

// sweepRunsLocked drops the runs older than limitMs and, beyond maxIDs, the
// oldest runs; it forgets producers with nothing left.
func (d *dedupeWindow) sweepRunsLocked(limitMs int64) (cutShort bool) {
	var keepSeq uint64
	if d.runs > d.maxIDs {
		// Keep the maxIDs runs that grew last (by sequence: runs made in the same
		// millisecond are ordered too, so the newest is never the one dropped).
		last := make([]idRun, 0, d.runs)
		for _, p := range d.producers {
			last = append(last, p.runs...)
		}
		slices.SortFunc(last, func(a, b idRun) int { return cmp.Compare(a.lastSeq, b.lastSeq) })
		keepSeq = last[d.runs-d.maxIDs].lastSeq
		if last[d.runs-d.maxIDs-1].lastMs >= limitMs && !d.evicted {
			d.evicted, cutShort = true, true // a run inside the window is dropped
		}
	}
	for prefix, p := range d.producers {
		d.runs -= p.expire(limitMs, keepSeq)
		if len(p.runs) == 0 && len(p.pending) == 0 {
			delete(d.producers, prefix)
		}
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
		prefix, n, isRun := producerID(id)
		var prod *producerIDs
		if isRun {
			if prod = d.producers[prefix]; prod != nil {
				if off, ok := prod.find(n); ok {
					comp.results[i] = PublishResult{Offset: off, Duplicate: true}
					continue
				}
				if prod.isPending(n) { // also a copy earlier in this batch
					waitLocked(d.waitingRuns, id, comp, i)
					continue
				}
			}
		}
		if j, ok := p.firstIdx[id]; ok {
			if p.sameAs == nil {
				p.sameAs = map[int]int{}
			}
			p.sameAs[i] = j
			continue
		}
		var k dedupeKey
		hashed := len(d.stored) > 0 || len(d.pending) > 0
		if hashed {
			k = d.key(id)
			if s, ok := d.stored[k]; ok {
				comp.results[i] = s.result()
				continue
			}
			if d.pending[k] != nil {
				waitLocked(d.pending, k, comp, i)
				continue
			}
		}
		// New: a producer's message due now joins its runs; any other id
		// is kept one by one.
		if isRun && m.DeliverAtMs <= nowMs {
			if prod == nil {
				prod = &producerIDs{}
				d.producers[prefix] = prod
			}
			if prod.reserve(n) {
				p.store = append(p.store, i)
				continue
			}
		}
		if !hashed {
			k = d.key(id)
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

// waitLocked makes msgs[i] of comp a duplicate of the copy of its id being
// stored: comp finishes once that copy is stored or failed.
func waitLocked[K comparable](pending map[K]*pendingID, k K, comp *completion, i int) {
	comp.mu.Lock()
	comp.parts++
	comp.mu.Unlock()
	pe := pending[k]
	if pe == nil {
		pe = &pendingID{}
		pending[k] = pe
	}
	pe.waiters = append(pe.waiters, func(res PublishResult, err error) {
		comp.mu.Lock()
		comp.results[i] = res
		comp.results[i].Duplicate = true
		comp.mu.Unlock()
		comp.finish(err)
	})
}

// settle records the outcome of storing msgs[idx[k]] as res[k] (or the
// failure err) and returns the waiters to notify, outside d.mu.
func (d *dedupeWindow) settle(msgs []*message.Message, idx []int, res []PublishResult, err error, nowMs int64) []func() {
	var notify []func()
	wake := func(pe *pendingID, r PublishResult) {
		for _, w := range pe.waiters {
			notify = append(notify, func() { w(r, err) })
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, i := range idx {
		id := msgs[i].ClientMessageID
		if id == "" {
			continue
		}
		r := res[k]
		if prefix, n, ok := producerID(id); ok {
			if prod := d.producers[prefix]; prod != nil && prod.release(n) {
				if len(d.waitingRuns) > 0 {
					if pe := d.waitingRuns[id]; pe != nil {
						delete(d.waitingRuns, id)
						wake(pe, r)
					}
				}
				if err == nil {
					d.rememberLocked(id, r.Offset, nowMs)
				}
				continue
			}
		}
		key := d.key(id)
		pe := d.pending[key]
		if pe == nil {
			continue
		}
		delete(d.pending, key)
		wake(pe, r)
		if err != nil {
			continue
		}
		if slot, serr := slotOf(r, nowMs); serr == nil {
			d.storeLocked(key, slot)
		}
	}
	return notify
}

// rememberLocked records that the message with client message id was
// stored in the log at off: in its producer's runs when it continues them,
// one by one otherwise.
func (d *dedupeWindow) rememberLocked(id string, off uint64, atMs int64) {
	if prefix, n, ok := producerID(id); ok {
		prod := d.producers[prefix]
		if prod == nil {
			prod = &producerIDs{}
			d.producers[prefix] = prod
		}
		d.recorded++
		newRun, ok := prod.record(n, off, atMs, d.recorded)
		if newRun {
			d.runs++
		}
		if ok {
			return
		}
	}
	d.storeLocked(d.key(id), dedupeSlot{offset: off, atMs: atMs})
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
				d.rememberLocked(m.ClientMessageID, off+uint64(i), m.PublishedAtMs)
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
