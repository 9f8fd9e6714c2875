package broker

import (
	"container/heap"
	"time"

	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/trace"
)

// policy is how a group treats deliveries; every cursor of the group shares it.
type policy struct {
	autoAck     bool
	ackTimeout  int64   // nanoseconds
	backoff     []int64 // nanoseconds, by failure number; the last repeats
	maxAttempts uint32
}

// backoffAfter returns the wait before the next delivery of a message that
// failed its attempts-th delivery.
func (p *policy) backoffAfter(attempts uint32) int64 {
	if len(p.backoff) == 0 {
		return 0
	}
	i := min(int(attempts), len(p.backoff)) - 1
	return p.backoff[max(i, 0)]
}

// cursor is the delivery state of one position in a topic: the single
// position of a cluster group, or the own position of one broadcast member.
//
// It does no I/O and reads no clock: the caller passes the time in, reads
// messages from the log, and persists the changes the cursor reports through
// takeUpdate. It is guarded by the owning group's mutex.
//
// Invariants: every offset below floor is acked; an offset in [floor, next)
// is acked (in acked), in flight (in inflight), waiting to be handed out
// again (in ready or later), or was delivered before a restart and not
// acked (it is handed out again because next restarts at floor). The
// distance next-floor is bounded by the group's window, which bounds every
// map here. Redriven dead letters are the exception: they may lie below the
// floor and are tracked in redriven until acked.
type cursor struct {
	member string
	floor  uint64
	next   uint64
	// acked holds acked offsets at or above floor; the value says whether
	// the ack is in the metadata store (it then needs a delete once the
	// floor passes it).
	acked map[uint64]bool
	// inflight holds delivered, unacked messages (business ack mode only).
	inflight map[uint64]flight
	// timeouts lists in-flight deliveries in delivery order. The ack timeout
	// is the same for every delivery of a group, so deadlines only grow and
	// the head is always the next to expire. Entries whose delivery ended
	// are skipped when they reach the head.
	timeouts []timeout
	// ready lists offsets to hand out again now, before fresh ones.
	ready []uint64
	// later holds nacked offsets until their retry backoff has passed.
	later retryHeap
	// attempts counts deliveries of unacked offsets; reasons keeps why the
	// last one failed.
	attempts map[uint64]uint32
	reasons  map[uint64]string
	// redriven holds dead letters handed back for delivery.
	redriven map[uint64]bool

	// sessions attached to this position, served round-robin: rr is the
	// session served last, and moves only when one is served.
	sessions []*Subscription
	rr       int
	// failedOn remembers the session a redelivered message failed on (ack
	// timeout, nack, disconnect), so that another session gets it when
	// there is one: a stuck consumer must not burn a message's attempts.
	failedOn map[uint64]*Subscription

	// Changes not yet persisted.
	dirtyAcked    []uint64
	droppedAcked  []uint64
	dirtyFailures map[uint64]bool // offsets whose failure record changed
	deadLettered  []deadLetter
	finishedDLQ   []uint64 // redriven dead letters that were acked
	savedFloor    uint64
	// failedBy counts failed deliveries per consumer client id, for the
	// per-minute statistics; events are failures and dead letters for the
	// trace. Both are drained by the group.
	failedBy map[string]int
	events   []meta.TraceEvent
}

type flight struct {
	sess     *Subscription
	deadline int64 // Unix nanoseconds
	attempt  uint32
}

type timeout struct {
	off      uint64
	attempt  uint32
	deadline int64
}

// deadLetter is a message the cursor gave up on.
type deadLetter struct {
	off      uint64
	attempts uint32
	reason   string
	redriven bool // its payload is in the dead-letter store, not (only) the log
}

func newCursor(c meta.Cursor) *cursor {
	cur := &cursor{
		member:        c.Member,
		floor:         c.Floor,
		next:          c.Floor,
		acked:         make(map[uint64]bool, len(c.Acked)),
		inflight:      make(map[uint64]flight),
		attempts:      make(map[uint64]uint32, len(c.Failures)),
		reasons:       make(map[uint64]string, len(c.Failures)),
		redriven:      make(map[uint64]bool, len(c.Redriven)),
		dirtyFailures: make(map[uint64]bool),
		savedFloor:    c.Floor,
	}
	for _, off := range c.Acked {
		if off >= c.Floor {
			cur.acked[off] = true
		} else {
			cur.droppedAcked = append(cur.droppedAcked, off)
		}
	}
	for _, off := range c.Redriven {
		cur.redriven[off] = true
		cur.ready = append(cur.ready, off)
	}
	for off, f := range c.Failures {
		if off < c.Floor && !cur.redriven[off] {
			cur.dirtyFailures[off] = true // stale: acked since; delete it
			continue
		}
		cur.attempts[off] = f.Attempts
		cur.reasons[off] = f.Reason
	}
	cur.advanceFloor()
	cur.savedFloor = cur.floor
	return cur
}

// isAcked reports whether off is acked (a redriven dead letter is not).
func (c *cursor) isAcked(off uint64) bool {
	if c.redriven[off] {
		return false
	}
	if off < c.floor {
		return true
	}
	_, ok := c.acked[off]
	return ok
}

// maxReadyScan bounds how far take looks past redeliveries left for other
// sessions.
const maxReadyScan = 64

// take returns the next offset to deliver: first a message waiting for
// redelivery whose backoff passed, then the next fresh one below end (the
// log's end) inside the window. ok is false when nothing is deliverable now.
//
// For session s, a redelivery that failed on s is left for another session
// when others (another session has credit).
func (c *cursor) take(now int64, end, window uint64, s *Subscription, others bool) (off uint64, ok bool) {
	for c.later.Len() > 0 && c.later[0].due <= now {
		c.ready = append(c.ready, heap.Pop(&c.later).(retryAt).off)
	}
	// Look a bounded way past redeliveries left for other sessions, so a
	// take stays cheap however many wait.
	for i := 0; i < len(c.ready) && i < maxReadyScan; i++ {
		off = c.ready[i]
		_, busy := c.inflight[off]
		gone := c.isAcked(off) || busy
		if !gone && others && c.failedOn[off] == s {
			continue // for another session
		}
		if i == 0 {
			c.ready = c.ready[1:]
		} else {
			c.ready = append(c.ready[:i], c.ready[i+1:]...)
		}
		i--
		if gone {
			continue
		}
		return off, true
	}
	if len(c.ready) == 0 {
		c.ready = nil // let the backing array go
	}
	for c.next < end && c.next < c.floor+window {
		off = c.next
		c.next++
		if c.isAcked(off) {
			continue
		}
		return off, true
	}
	return 0, false
}

// skipTo moves a position that points below the oldest stored message (its
// segments were removed) up to first.
func (c *cursor) skipTo(first uint64) {
	if c.floor < first {
		for off, stored := range c.acked {
			if off < first {
				c.drop(off, stored)
			}
		}
		c.floor = first
		c.advanceFloor()
	}
	if c.next < c.floor {
		c.next = c.floor
	}
}

// deliver records that off was handed to sess at now. With auto ack the
// delivery counts as acked at once. It returns the attempt number and why
// the previous attempt failed.
func (c *cursor) deliver(off uint64, sess *Subscription, now int64, p *policy) (attempt uint32, lastFailure string) {
	attempt = c.attempts[off] + 1
	lastFailure = c.reasons[off]
	if p.autoAck {
		c.ack(off)
		return attempt, lastFailure
	}
	c.attempts[off] = attempt
	delete(c.failedOn, off)
	d := now + p.ackTimeout
	c.inflight[off] = flight{sess: sess, deadline: d, attempt: attempt}
	c.timeouts = append(c.timeouts, timeout{off: off, attempt: attempt, deadline: d})
	return attempt, lastFailure
}

// ack marks off acked. It reports whether anything changed.
func (c *cursor) ack(off uint64) bool {
	if c.redriven[off] {
		delete(c.redriven, off)
		c.forget(off)
		c.finishedDLQ = append(c.finishedDLQ, off)
		return true
	}
	if c.isAcked(off) {
		return false
	}
	c.forget(off)
	c.acked[off] = false
	c.dirtyAcked = append(c.dirtyAcked, off)
	c.advanceFloor()
	return true
}

// forget drops the delivery state of off.
func (c *cursor) forget(off uint64) {
	delete(c.failedOn, off)
	delete(c.inflight, off)
	delete(c.attempts, off)
	if _, ok := c.reasons[off]; ok {
		delete(c.reasons, off)
		c.dirtyFailures[off] = true
	}
}

// fail ends the delivery of off with reason. The message goes to the dead
// letters once it used up its attempts; otherwise it is handed out again,
// after the retry backoff when backoff is set, at once when not.
func (c *cursor) fail(off uint64, kind, reason string, now int64, backoff bool, p *policy) {
	client := ""
	if f, ok := c.inflight[off]; ok && f.sess != nil {
		if c.failedBy == nil {
			c.failedBy = make(map[string]int)
		}
		client = f.sess.clientID
		c.failedBy[client]++
		if c.failedOn == nil {
			c.failedOn = make(map[uint64]*Subscription)
		}
		c.failedOn[off] = f.sess
	}
	c.events = append(c.events, meta.TraceEvent{Kind: kind, Offset: off, Count: 1, TimeMs: now / 1e6,
		Client: client, Attempt: c.attempts[off], Reason: reason})
	delete(c.inflight, off)
	c.reasons[off] = reason
	c.dirtyFailures[off] = true
	attempts := c.attempts[off]
	if p.maxAttempts > 0 && attempts >= p.maxAttempts {
		redriven := c.redriven[off]
		c.events = append(c.events, meta.TraceEvent{Kind: trace.DeadLettered, Offset: off, Count: 1, TimeMs: now / 1e6,
			Attempt: attempts, Reason: reason})
		c.deadLettered = append(c.deadLettered, deadLetter{off: off, attempts: attempts, reason: reason, redriven: redriven})
		if redriven {
			// Back to the dead letters: the record is rewritten, not deleted.
			delete(c.redriven, off)
			c.forget(off)
			return
		}
		c.ack(off)
		return
	}
	if backoff {
		if wait := p.backoffAfter(attempts); wait > 0 {
			heap.Push(&c.later, retryAt{due: now + wait, off: off})
			return
		}
	}
	c.ready = append(c.ready, off)
}

// nack ends the in-flight delivery of off. It reports whether off was in flight.
func (c *cursor) nack(off uint64, reason string, now int64, p *policy) bool {
	if _, ok := c.inflight[off]; !ok {
		return false
	}
	if reason == "" {
		reason = "nacked"
	}
	c.fail(off, trace.Nacked, reason, now, true, p)
	return true
}

// redrive hands a dead letter back for delivery with a fresh attempt count.
func (c *cursor) redrive(off uint64) {
	c.redriven[off] = true
	c.attempts[off] = 0
	c.ready = append(c.ready, off)
}

// purgeRedriven forgets a redriven dead letter that was deleted.
func (c *cursor) purgeRedriven(off uint64) {
	if c.redriven[off] {
		delete(c.redriven, off)
		c.forget(off)
	}
}

func (c *cursor) advanceFloor() {
	for {
		stored, ok := c.acked[c.floor]
		if !ok {
			break
		}
		c.drop(c.floor, stored)
		c.floor++
	}
	if c.next < c.floor {
		c.next = c.floor
	}
}

// drop forgets an ack the floor passed; a stored one must be deleted.
func (c *cursor) drop(off uint64, stored bool) {
	delete(c.acked, off)
	if stored {
		c.droppedAcked = append(c.droppedAcked, off)
	}
}

// expire ends every in-flight delivery whose deadline is at or before now;
// each counts as a failed attempt and is handed out again at once.
func (c *cursor) expire(now int64, p *policy) int {
	n := 0
	for len(c.timeouts) > 0 && c.timeouts[0].deadline <= now {
		t := c.timeouts[0]
		c.timeouts = c.timeouts[1:]
		if f, ok := c.inflight[t.off]; ok && f.attempt == t.attempt {
			c.fail(t.off, trace.TimedOut, "ack timeout", now, false, p)
			n++
		}
	}
	if len(c.timeouts) == 0 {
		c.timeouts = nil
	}
	return n
}

// nextWake returns the earliest time something becomes due: an ack
// deadline or the end of a retry backoff.
func (c *cursor) nextWake() (int64, bool) {
	var when int64
	found := false
	for len(c.timeouts) > 0 {
		t := c.timeouts[0]
		if f, ok := c.inflight[t.off]; ok && f.attempt == t.attempt {
			when, found = t.deadline, true
			break
		}
		c.timeouts = c.timeouts[1:]
	}
	if c.later.Len() > 0 && (!found || c.later[0].due < when) {
		when, found = c.later[0].due, true
	}
	return when, found
}

// release gives back every in-flight delivery of sess at once; each counts
// as a failed attempt (the consumer went away while holding it).
func (c *cursor) release(sess *Subscription, now int64, p *policy) {
	for off, f := range c.inflight {
		if f.sess == sess {
			c.fail(off, trace.Disconnected, "consumer disconnected", now, false, p)
		}
	}
}

// pickSession returns the next attached session with credit after the
// one served last, round-robin, and whether another session has credit
// too. served moves the turn on once it got messages.
func (c *cursor) pickSession() (s *Subscription, others bool, served func()) {
	n := len(c.sessions)
	for i := 1; i <= n; i++ {
		k := (c.rr + i) % n
		if s := c.sessions[k]; s.credit > 0 {
			for j := i + 1; j <= n && !others; j++ {
				others = c.sessions[(c.rr+j)%n].credit > 0
			}
			return s, others, func() { c.rr = k }
		}
	}
	return nil, false, nil
}

// detach removes sess from the cursor and releases its deliveries.
func (c *cursor) detach(sess *Subscription, now int64, p *policy) {
	for i, s := range c.sessions {
		if s == sess {
			c.sessions = append(c.sessions[:i], c.sessions[i+1:]...)
			break
		}
	}
	c.release(sess, now, p)
}

// reset moves the position to floor and forgets every ack, delivery and
// failure above it. Redriven dead letters stay.
func (c *cursor) reset(floor uint64) {
	c.floor, c.next, c.savedFloor = floor, floor, floor
	c.acked = make(map[uint64]bool)
	c.inflight = make(map[uint64]flight)
	c.timeouts, c.later = nil, nil
	c.ready = c.ready[:0]
	for off := range c.redriven {
		c.ready = append(c.ready, off)
	}
	for off := range c.attempts {
		if !c.redriven[off] {
			delete(c.attempts, off)
			delete(c.reasons, off)
		}
	}
	c.dirtyAcked, c.droppedAcked = nil, nil
	c.dirtyFailures = make(map[uint64]bool)
}

// backlog counts messages below end not yet acked.
func (c *cursor) backlog(end uint64) uint64 {
	if end <= c.floor {
		return 0
	}
	n := end - c.floor
	for off := range c.acked {
		if off < end {
			n--
		}
	}
	return n
}

// takeUpdate returns the changes since the last call, for persistence:
// the floor before and now, acks above the floor to store and stored acks
// below it to delete, failure records, and dead letters. Dead letters come
// without payload; the caller adds it.
func (c *cursor) takeUpdate(nowMs int64) (u meta.CursorUpdate, changed bool) {
	if c.floor == c.savedFloor && len(c.dirtyAcked) == 0 && len(c.droppedAcked) == 0 &&
		len(c.dirtyFailures) == 0 && len(c.deadLettered) == 0 && len(c.finishedDLQ) == 0 {
		return u, false
	}
	u = meta.CursorUpdate{Member: c.member, OldFloor: c.savedFloor, NewFloor: c.floor, Dropped: c.droppedAcked,
		FinishedDeadLetters: c.finishedDLQ}
	for _, off := range c.dirtyAcked {
		if stored, ok := c.acked[off]; ok && !stored {
			c.acked[off] = true
			u.Acked = append(u.Acked, off)
		}
	}
	for off := range c.dirtyFailures {
		if r, ok := c.reasons[off]; ok && !c.isAcked(off) {
			if u.Failures == nil {
				u.Failures = make(map[uint64]meta.Failure)
			}
			u.Failures[off] = meta.Failure{Attempts: c.attempts[off], Reason: r}
		} else {
			u.ClearFailures = append(u.ClearFailures, off)
		}
	}
	for _, dl := range c.deadLettered {
		u.DeadLetters = append(u.DeadLetters, meta.DeadLetter{
			Offset: dl.off, Attempts: dl.attempts, Reason: dl.reason, DeadAtMs: nowMs,
			// Redriven stays false: it is a dead letter again.
		})
	}
	c.dirtyAcked = c.dirtyAcked[:0]
	c.droppedAcked, c.deadLettered, c.finishedDLQ = nil, nil, nil
	clear(c.dirtyFailures)
	c.savedFloor = c.floor
	return u, true
}

// retryAt is a nacked offset waiting for its backoff to pass.
type retryAt struct {
	due int64
	off uint64
}

// retryHeap is a min-heap of retryAt by due time.
type retryHeap []retryAt

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryAt)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// durationsNs converts milliseconds to nanoseconds.
func durationsNs(ms []int64) []int64 {
	out := make([]int64, len(ms))
	for i, v := range ms {
		out[i] = v * int64(time.Millisecond)
	}
	return out
}
