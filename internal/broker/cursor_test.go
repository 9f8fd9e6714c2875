package broker

import (
	"slices"
	"testing"
)

// takeAll hands out everything available and returns the offsets.
func takeAll(c *cursor, end, window uint64) []uint64 {
	var out []uint64
	for {
		off, _, ok := c.take(end, window)
		if !ok {
			return out
		}
		out = append(out, off)
	}
}

func TestCursorHandsOutInOrderWithinWindow(t *testing.T) {
	c := newCursor("", 0, nil)
	got := takeAll(c, 10, 4)
	if want := []uint64{0, 1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("take with window 4 = %v, want %v", got, want)
	}
	s := &Subscription{}
	for _, off := range got {
		c.deliver(off, s, 0, 100, false)
	}
	c.ack(1)
	if c.floor != 0 {
		t.Fatalf("floor after acking 1 but not 0 = %d, want 0", c.floor)
	}
	if got := takeAll(c, 10, 4); len(got) != 0 {
		t.Fatalf("window full but took %v", got)
	}
	c.ack(0)
	if c.floor != 2 {
		t.Fatalf("floor after acking 0 and 1 = %d, want 2", c.floor)
	}
	if got := takeAll(c, 10, 4); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("take after floor moved = %v, want [4 5]", got)
	}
}

func TestCursorRedeliversExpiredAndNackedFirst(t *testing.T) {
	c := newCursor("", 0, nil)
	s := &Subscription{}
	for _, off := range takeAll(c, 3, 100) {
		c.deliver(off, s, 0, 100, false)
	}
	if n := c.expire(99); n != 0 {
		t.Fatalf("expire before deadline expired %d", n)
	}
	if d, ok := c.nextDeadline(); !ok || d != 100 {
		t.Fatalf("nextDeadline = %d, %v; want 100, true", d, ok)
	}
	c.ack(0)
	if n := c.expire(100); n != 2 {
		t.Fatalf("expire at deadline expired %d, want 2 (0 was acked)", n)
	}
	off, fresh, ok := c.take(5, 100)
	if !ok || fresh || off != 1 {
		t.Fatalf("take after expiry = %d fresh=%v ok=%v, want redelivery of 1", off, fresh, ok)
	}
	if a := c.deliver(off, s, 200, 100, false); a != 2 {
		t.Fatalf("attempt of redelivery = %d, want 2", a)
	}
	if !c.nack(1) || c.nack(1) {
		t.Fatal("nack of in-flight 1 should succeed once")
	}
	if got := takeAll(c, 5, 100); !slices.Equal(got, []uint64{2, 1, 3, 4}) {
		t.Fatalf("take = %v, want redeliveries [2 1] then fresh [3 4]", got)
	}
}

func TestCursorReleaseGivesBackOnlyThatSessionsMessages(t *testing.T) {
	c := newCursor("", 0, nil)
	a, b := &Subscription{}, &Subscription{}
	offs := takeAll(c, 4, 100)
	for i, off := range offs {
		s := a
		if i%2 == 1 {
			s = b
		}
		c.deliver(off, s, 0, 100, false)
	}
	c.release(a)
	got := takeAll(c, 4, 100)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{0, 2}) {
		t.Fatalf("after releasing a, redelivered %v, want [0 2]", got)
	}
}

func TestCursorRestoredFromStoredAcksSkipsThem(t *testing.T) {
	c := newCursor("m", 10, []uint64{5, 10, 11, 13})
	if c.floor != 12 {
		t.Fatalf("floor = %d, want 12 (10 and 11 acked above stored floor 10)", c.floor)
	}
	if got := takeAll(c, 16, 100); !slices.Equal(got, []uint64{12, 14, 15}) {
		t.Fatalf("take = %v, want [12 14 15] (13 was acked)", got)
	}
	if n := c.backlog(16); n != 3 {
		t.Fatalf("backlog = %d, want 3", n)
	}
}

func TestCursorAutoAckAndUpdates(t *testing.T) {
	c := newCursor("", 0, nil)
	s := &Subscription{}
	for _, off := range takeAll(c, 3, 100) {
		if a := c.deliver(off, s, 0, 100, true); a != 1 {
			t.Fatalf("attempt = %d", a)
		}
	}
	if c.floor != 3 || len(c.inflight) != 0 {
		t.Fatalf("auto ack: floor %d inflight %d, want 3 and 0", c.floor, len(c.inflight))
	}
	u, changed := c.takeUpdate()
	if !changed || u.OldFloor != 0 || u.NewFloor != 3 || len(u.Acked) != 0 || len(u.Dropped) != 0 {
		t.Fatalf("takeUpdate = %+v %v, want floor 0→3, nothing to store or delete", u, changed)
	}
	if _, changed := c.takeUpdate(); changed {
		t.Fatal("second takeUpdate reported a change")
	}
}

// An ack stored above the floor is deleted once the floor passes it.
func TestCursorStoredAcksAreDeletedOnceFloorPasses(t *testing.T) {
	c := newCursor("", 0, nil)
	s := &Subscription{}
	for _, off := range takeAll(c, 3, 100) {
		c.deliver(off, s, 0, 100, false)
	}
	c.ack(2)
	u, _ := c.takeUpdate()
	if !slices.Equal(u.Acked, []uint64{2}) || u.NewFloor != 0 {
		t.Fatalf("after acking 2 first: %+v, want ack 2 stored, floor 0", u)
	}
	c.ack(0)
	c.ack(1)
	u, _ = c.takeUpdate()
	if u.NewFloor != 3 || len(u.Acked) != 0 || !slices.Equal(u.Dropped, []uint64{2}) {
		t.Fatalf("after acking 0 and 1: %+v, want floor 3, stored ack 2 deleted", u)
	}
}

func TestCursorSkipsRemovedSegments(t *testing.T) {
	c := newCursor("", 2, []uint64{7})
	c.skipTo(5)
	if c.floor != 5 || c.next != 5 {
		t.Fatalf("after skipTo(5): floor %d next %d, want 5 5", c.floor, c.next)
	}
	if got := takeAll(c, 9, 100); !slices.Equal(got, []uint64{5, 6, 8}) {
		t.Fatalf("take = %v, want [5 6 8]", got)
	}
}
