package broker

import (
	"slices"
	"testing"

	"github.com/dmqio/dmq/internal/meta"
)

// testPolicy: business ack, timeout 100, backoff 10, 20, 30; 4 attempts.
var testPolicy = policy{ackTimeout: 100, backoff: []int64{10, 20, 30}, maxAttempts: 4}

// takeAll hands out everything available at now and returns the offsets.
func takeAll(c *cursor, now int64, end, window uint64) []uint64 {
	var out []uint64
	for {
		off, ok := c.take(now, end, window, nil, false)
		if !ok {
			return out
		}
		out = append(out, off)
	}
}

func deliverAll(c *cursor, s *Subscription, now int64, offs []uint64) {
	for _, off := range offs {
		c.deliver(off, s, now, &testPolicy)
	}
}

func TestCursorHandsOutInOrderWithinWindow(t *testing.T) {
	c := newCursor(meta.Cursor{})
	got := takeAll(c, 0, 10, 4)
	if want := []uint64{0, 1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("take with window 4 = %v, want %v", got, want)
	}
	deliverAll(c, &Subscription{}, 0, got)
	c.ack(1)
	if c.floor != 0 {
		t.Fatalf("floor after acking 1 but not 0 = %d, want 0", c.floor)
	}
	if got := takeAll(c, 0, 10, 4); len(got) != 0 {
		t.Fatalf("window full but took %v", got)
	}
	c.ack(0)
	if c.floor != 2 {
		t.Fatalf("floor after acking 0 and 1 = %d, want 2", c.floor)
	}
	if got := takeAll(c, 0, 10, 4); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("take after floor moved = %v, want [4 5]", got)
	}
}

func TestCursorTimeoutRedeliversAtOnceNackAfterBackoff(t *testing.T) {
	c := newCursor(meta.Cursor{})
	s := &Subscription{}
	deliverAll(c, s, 0, takeAll(c, 0, 3, 100))
	if n := c.expire(99, &testPolicy); n != 0 {
		t.Fatalf("expire before deadline expired %d", n)
	}
	if d, ok := c.nextWake(); !ok || d != 100 {
		t.Fatalf("nextWake = %d, %v; want 100, true", d, ok)
	}
	c.ack(0)
	if n := c.expire(100, &testPolicy); n != 2 {
		t.Fatalf("expire at deadline expired %d, want 2 (0 was acked)", n)
	}
	off, ok := c.take(100, 3, 100, nil, false)
	if !ok || off != 1 {
		t.Fatalf("take after expiry = %d ok=%v, want redelivery of 1 at once", off, ok)
	}
	if a, why := c.deliver(off, s, 100, &testPolicy); a != 2 || why != "ack timeout" {
		t.Fatalf("redelivery = attempt %d reason %q, want 2 and ack timeout", a, why)
	}
	if !c.nack(1, "boom", 150, &testPolicy) || c.nack(1, "boom", 150, &testPolicy) {
		t.Fatal("nack of in-flight 1 should succeed once")
	}
	// 1 failed its 2nd attempt: it waits backoff[1] = 20, until 170.
	if got := takeAll(c, 150, 3, 100); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("take at 150 = %v, want only 2 (1 is backing off)", got)
	}
	if d, ok := c.nextWake(); !ok || d != 170 {
		t.Fatalf("nextWake = %d, %v; want 170 (end of 1's backoff)", d, ok)
	}
	if got := takeAll(c, 170, 3, 100); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("take at 170 = %v, want [1]", got)
	}
	if a, why := c.deliver(1, s, 170, &testPolicy); a != 3 || why != "boom" {
		t.Fatalf("third delivery = attempt %d reason %q, want 3 and boom", a, why)
	}
}

func TestCursorDeadLettersAfterMaxAttemptsAndRedrives(t *testing.T) {
	c := newCursor(meta.Cursor{})
	s := &Subscription{}
	now := int64(0)
	for attempt := 1; attempt <= 4; attempt++ {
		got := takeAll(c, now, 2, 100)
		if !slices.Contains(got, 0) {
			t.Fatalf("attempt %d: take = %v, want 0 among them", attempt, got)
		}
		deliverAll(c, s, now, got)
		c.ack(1)
		c.nack(0, "bad", now, &testPolicy)
		now += 1000
	}
	if !c.isAcked(0) || c.floor != 2 {
		t.Fatalf("after 4 failed attempts: acked=%v floor=%d, want it out of the group (floor 2)", c.isAcked(0), c.floor)
	}
	u, _ := c.takeUpdate(7)
	if len(u.DeadLetters) != 1 || u.DeadLetters[0].Offset != 0 || u.DeadLetters[0].Attempts != 4 || u.DeadLetters[0].Reason != "bad" {
		t.Fatalf("dead letters = %+v, want offset 0 after 4 attempts, reason bad", u.DeadLetters)
	}
	if !slices.Contains(u.ClearFailures, 0) {
		t.Fatalf("failure record of the dead letter not cleared: %+v", u)
	}

	// Redrive: delivered again below the floor with a fresh count; ack ends it.
	c.redrive(0)
	off, ok := c.take(now, 2, 100, nil, false)
	if !ok || off != 0 {
		t.Fatalf("take after redrive = %d, %v; want 0", off, ok)
	}
	if a, _ := c.deliver(0, s, now, &testPolicy); a != 1 {
		t.Fatalf("redriven attempt = %d, want 1", a)
	}
	if !c.ack(0) || c.ack(0) {
		t.Fatal("ack of the redriven message should change state once")
	}
	u, _ = c.takeUpdate(8)
	if !slices.Equal(u.FinishedDeadLetters, []uint64{0}) {
		t.Fatalf("finished dead letters = %v, want [0]", u.FinishedDeadLetters)
	}
}

func TestCursorReleaseGivesBackOnlyThatSessionsMessages(t *testing.T) {
	c := newCursor(meta.Cursor{})
	a, b := &Subscription{}, &Subscription{}
	for i, off := range takeAll(c, 0, 4, 100) {
		s := a
		if i%2 == 1 {
			s = b
		}
		c.deliver(off, s, 0, &testPolicy)
	}
	c.release(a, 0, &testPolicy)
	got := takeAll(c, 0, 4, 100)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{0, 2}) {
		t.Fatalf("after releasing a, redelivered %v, want [0 2]", got)
	}
}

func TestCursorRestoredFromStoreSkipsAcksKeepsFailures(t *testing.T) {
	c := newCursor(meta.Cursor{Member: "m", Floor: 10, Acked: []uint64{5, 10, 11, 13},
		Failures: map[uint64]meta.Failure{12: {Attempts: 3, Reason: "x"}, 4: {Attempts: 1, Reason: "old"}}})
	if c.floor != 12 {
		t.Fatalf("floor = %d, want 12 (10 and 11 acked above stored floor 10)", c.floor)
	}
	if got := takeAll(c, 0, 16, 100); !slices.Equal(got, []uint64{12, 14, 15}) {
		t.Fatalf("take = %v, want [12 14 15] (13 was acked)", got)
	}
	if a, why := c.deliver(12, &Subscription{}, 0, &testPolicy); a != 4 || why != "x" {
		t.Fatalf("delivery of 12 = attempt %d reason %q, want 4 and x (restored)", a, why)
	}
	if n := c.backlog(16); n != 3 {
		t.Fatalf("backlog = %d, want 3", n)
	}
	u, _ := c.takeUpdate(0)
	if !slices.Contains(u.ClearFailures, 4) {
		t.Fatalf("stale failure below the floor not cleared: %+v", u)
	}
}

func TestCursorAutoAckAndUpdates(t *testing.T) {
	c := newCursor(meta.Cursor{})
	auto := policy{autoAck: true}
	for _, off := range takeAll(c, 0, 3, 100) {
		if a, _ := c.deliver(off, &Subscription{}, 0, &auto); a != 1 {
			t.Fatalf("attempt = %d", a)
		}
	}
	if c.floor != 3 || len(c.inflight) != 0 {
		t.Fatalf("auto ack: floor %d inflight %d, want 3 and 0", c.floor, len(c.inflight))
	}
	u, changed := c.takeUpdate(0)
	if !changed || u.OldFloor != 0 || u.NewFloor != 3 || len(u.Acked) != 0 || len(u.Dropped) != 0 {
		t.Fatalf("takeUpdate = %+v %v, want floor 0→3, nothing to store or delete", u, changed)
	}
	if _, changed := c.takeUpdate(0); changed {
		t.Fatal("second takeUpdate reported a change")
	}
}

// An ack stored above the floor is deleted once the floor passes it.
func TestCursorStoredAcksAreDeletedOnceFloorPasses(t *testing.T) {
	c := newCursor(meta.Cursor{})
	deliverAll(c, &Subscription{}, 0, takeAll(c, 0, 3, 100))
	c.ack(2)
	u, _ := c.takeUpdate(0)
	if !slices.Equal(u.Acked, []uint64{2}) || u.NewFloor != 0 {
		t.Fatalf("after acking 2 first: %+v, want ack 2 stored, floor 0", u)
	}
	c.ack(0)
	c.ack(1)
	u, _ = c.takeUpdate(0)
	if u.NewFloor != 3 || len(u.Acked) != 0 || !slices.Equal(u.Dropped, []uint64{2}) {
		t.Fatalf("after acking 0 and 1: %+v, want floor 3, stored ack 2 deleted", u)
	}
}

func TestCursorSkipsRemovedSegments(t *testing.T) {
	c := newCursor(meta.Cursor{Floor: 2, Acked: []uint64{7}})
	c.skipTo(5)
	if c.floor != 5 || c.next != 5 {
		t.Fatalf("after skipTo(5): floor %d next %d, want 5 5", c.floor, c.next)
	}
	if got := takeAll(c, 0, 9, 100); !slices.Equal(got, []uint64{5, 6, 8}) {
		t.Fatalf("take = %v, want [5 6 8]", got)
	}
}

func TestCursorResetForgetsAcksAndDeliveries(t *testing.T) {
	c := newCursor(meta.Cursor{})
	deliverAll(c, &Subscription{}, 0, takeAll(c, 0, 5, 100))
	c.ack(0)
	c.ack(3)
	c.reset(1)
	if got := takeAll(c, 0, 5, 100); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("take after reset to 1 = %v, want [1 2 3 4]", got)
	}
	if a, _ := c.deliver(1, &Subscription{}, 0, &testPolicy); a != 1 {
		t.Fatalf("attempt after reset = %d, want 1", a)
	}
}

// A message that timed out on one session goes to another session with
// credit, not back to the one that held it; with no other session, it
// goes back to the same one.
func TestRedeliveryAvoidsTheSessionItFailedOn(t *testing.T) {
	p := &policy{ackTimeout: 10, maxAttempts: 16}
	c := newCursor(meta.Cursor{})
	stuck, fine := &Subscription{clientID: "stuck", credit: 10}, &Subscription{clientID: "fine", credit: 10}
	c.sessions = []*Subscription{stuck, fine}
	off, ok := c.take(0, 1, 100, stuck, true)
	if !ok || off != 0 {
		t.Fatalf("take = %d, %v", off, ok)
	}
	c.deliver(0, stuck, 0, p)
	if n := c.expire(100, p); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if off, ok := c.take(100, 1, 100, stuck, true); ok {
		t.Fatalf("the stuck session got its own timed-out message %d back while another session had credit", off)
	}
	if off, ok := c.take(100, 1, 100, fine, true); !ok || off != 0 {
		t.Fatalf("the other session: take = %d, %v; want the redelivery of 0", off, ok)
	}
	c.deliver(0, fine, 100, p)
	c.expire(200, p)
	if off, ok := c.take(200, 1, 100, stuck, false); !ok || off != 0 {
		t.Fatalf("alone, the session that did not fail it last: take = %d, %v", off, ok)
	}
}

// Round-robin moves on only when a session was served.
func TestPickSessionTakesTurnsByDeliveries(t *testing.T) {
	c := newCursor(meta.Cursor{})
	a, b := &Subscription{credit: 1}, &Subscription{credit: 1}
	c.sessions = []*Subscription{a, b}
	s1, others, _ := c.pickSession()
	s2, _, served := c.pickSession()
	if s1 != s2 || !others {
		t.Fatal("picking without serving moved the turn")
	}
	served()
	if s3, _, _ := c.pickSession(); s3 == s1 {
		t.Fatal("the turn did not move after a session was served")
	}
}
