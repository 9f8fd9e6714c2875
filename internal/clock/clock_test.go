package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

// A step of the wall clock after New moves nothing; New reads it.
func TestStepsOfTheWallClockDoNotMoveIt(t *testing.T) {
	var offset atomic.Int64
	wall := func() time.Time { return time.Now().Add(time.Duration(offset.Load())).Round(0) }
	offset.Store(int64(42 * time.Minute))
	c := New(wall)
	if d := c.Now().Sub(time.Now()); d < 41*time.Minute || d > 43*time.Minute {
		t.Fatalf("a clock made with the wall 42m ahead is %v ahead", d)
	}
	before := c.Now()
	offset.Store(int64(-time.Hour)) // the machine's clock steps back 1h42m
	time.Sleep(20 * time.Millisecond)
	after := c.Now()
	if step := after.Sub(before); step < 20*time.Millisecond || step > time.Second {
		t.Fatalf("20ms later the clock moved %v", step)
	}
}
