package broker

import "github.com/dmqio/dmq/internal/meta"

// cursor is the delivery state of one position in a topic: the single
// position of a cluster group, or the own position of one broadcast member.
//
// It does no I/O and reads no clock: the caller passes the time in, reads
// messages from the log, and persists the changes the cursor reports through
// takeUpdate. It is guarded by the owning group's mutex.
//
// Invariants: every offset below floor is acked; offsets in [floor, next)
// are acked (in acked), in flight (in inflight), waiting for redelivery (in
// retry) or were delivered before a restart and not acked (they are handed
// out again because next restarts at floor). The distance next-floor is
// bounded by the group's window, which bounds every map here.
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
	// (acked, nacked, released) are skipped when they reach the head.
	timeouts []timeout
	// retry lists offsets to hand out again before fresh ones.
	retry []uint64
	// attempts counts deliveries of unacked offsets.
	attempts map[uint64]uint32

	// sessions attached to this position, served round-robin.
	sessions []*Subscription
	rr       int

	// Changes not yet persisted: new acks above the floor, stored acks the
	// floor passed (to delete), and the floor itself.
	dirtyAcked   []uint64
	droppedAcked []uint64
	savedFloor   uint64
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

func newCursor(member string, floor uint64, acked []uint64) *cursor {
	c := &cursor{
		member:     member,
		floor:      floor,
		next:       floor,
		acked:      make(map[uint64]bool, len(acked)),
		inflight:   make(map[uint64]flight),
		attempts:   make(map[uint64]uint32),
		savedFloor: floor,
	}
	for _, off := range acked {
		if off >= floor {
			c.acked[off] = true
		} else {
			c.droppedAcked = append(c.droppedAcked, off)
		}
	}
	c.advanceFloor()
	c.savedFloor = c.floor
	return c
}

// isAcked reports whether off is acked.
func (c *cursor) isAcked(off uint64) bool {
	if off < c.floor {
		return true
	}
	_, ok := c.acked[off]
	return ok
}

// take returns the next offset to deliver: first a message waiting for
// redelivery, then the next fresh one below end (the log's end) and inside
// the window. ok is false when there is nothing to deliver now.
func (c *cursor) take(end uint64, window uint64) (off uint64, fresh bool, ok bool) {
	for len(c.retry) > 0 {
		off = c.retry[0]
		c.retry = c.retry[1:]
		if c.isAcked(off) {
			continue
		}
		if _, busy := c.inflight[off]; busy {
			continue
		}
		return off, false, true
	}
	if len(c.retry) == 0 {
		c.retry = nil // let the backing array go
	}
	for c.next < end && c.next < c.floor+window {
		off = c.next
		c.next++
		if c.isAcked(off) {
			continue
		}
		return off, true, true
	}
	return 0, false, false
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

// deliver records that off was handed to sess at now. With autoAck the
// delivery counts as acked at once. It returns the attempt number.
func (c *cursor) deliver(off uint64, sess *Subscription, now, ackTimeout int64, autoAck bool) uint32 {
	attempt := c.attempts[off] + 1
	if autoAck {
		c.ack(off)
		return attempt
	}
	c.attempts[off] = attempt
	d := now + ackTimeout
	c.inflight[off] = flight{sess: sess, deadline: d, attempt: attempt}
	c.timeouts = append(c.timeouts, timeout{off: off, attempt: attempt, deadline: d})
	return attempt
}

// ack marks off acked. It reports whether anything changed.
func (c *cursor) ack(off uint64) bool {
	if c.isAcked(off) {
		return false
	}
	delete(c.inflight, off)
	delete(c.attempts, off)
	c.acked[off] = false
	c.dirtyAcked = append(c.dirtyAcked, off)
	c.advanceFloor()
	return true
}

// nack ends the in-flight delivery of off so it is handed out again. It
// reports whether off was in flight.
func (c *cursor) nack(off uint64) bool {
	if _, ok := c.inflight[off]; !ok {
		return false
	}
	delete(c.inflight, off)
	c.retry = append(c.retry, off)
	return true
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

// expire ends every in-flight delivery whose deadline is at or before now
// and queues it for redelivery. It returns how many expired.
func (c *cursor) expire(now int64) int {
	n := 0
	for len(c.timeouts) > 0 && c.timeouts[0].deadline <= now {
		t := c.timeouts[0]
		c.timeouts = c.timeouts[1:]
		if f, ok := c.inflight[t.off]; ok && f.attempt == t.attempt {
			delete(c.inflight, t.off)
			c.retry = append(c.retry, t.off)
			n++
		}
	}
	if len(c.timeouts) == 0 {
		c.timeouts = nil
	}
	return n
}

// nextDeadline returns the earliest deadline of a live in-flight delivery.
func (c *cursor) nextDeadline() (int64, bool) {
	for len(c.timeouts) > 0 {
		t := c.timeouts[0]
		if f, ok := c.inflight[t.off]; ok && f.attempt == t.attempt {
			return t.deadline, true
		}
		c.timeouts = c.timeouts[1:]
	}
	return 0, false
}

// release gives back every in-flight delivery of sess, for redelivery.
func (c *cursor) release(sess *Subscription) {
	for off, f := range c.inflight {
		if f.sess == sess {
			delete(c.inflight, off)
			c.retry = append(c.retry, off)
		}
	}
}

// pickSession returns the next attached session with credit, round-robin.
func (c *cursor) pickSession() *Subscription {
	for i := 0; i < len(c.sessions); i++ {
		c.rr = (c.rr + 1) % len(c.sessions)
		if s := c.sessions[c.rr]; s.credit > 0 {
			return s
		}
	}
	return nil
}

// detach removes sess from the cursor and releases its deliveries.
func (c *cursor) detach(sess *Subscription) {
	for i, s := range c.sessions {
		if s == sess {
			c.sessions = append(c.sessions[:i], c.sessions[i+1:]...)
			break
		}
	}
	c.release(sess)
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
// the floor before and now, acks above the floor to store, and stored acks
// below the floor to delete.
func (c *cursor) takeUpdate() (u meta.CursorUpdate, changed bool) {
	if c.floor == c.savedFloor && len(c.dirtyAcked) == 0 && len(c.droppedAcked) == 0 {
		return u, false
	}
	u = meta.CursorUpdate{Member: c.member, OldFloor: c.savedFloor, NewFloor: c.floor, Dropped: c.droppedAcked}
	for _, off := range c.dirtyAcked {
		if stored, ok := c.acked[off]; ok && !stored {
			c.acked[off] = true
			u.Acked = append(u.Acked, off)
		}
	}
	c.dirtyAcked = c.dirtyAcked[:0]
	c.droppedAcked = nil
	c.savedFloor = c.floor
	return u, true
}
