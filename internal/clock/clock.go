// Package clock is a broker's time: the wall clock read once, when the broker opens,
// then advanced by the monotonic clock. A step of the machine's wall clock while the
// broker runs (an NTP step, a manual change, a resumed virtual machine) moves neither
// delayed messages nor ack timeouts nor the order of anything; the next broker to open
// (after a restart, or on the node that takes over a shard) reads the wall clock again.
// Due times of delayed messages are absolute, so a new leader whose clock differs by d
// delivers them d early or late, in the same order.
package clock

import "time"

// Clock tells the broker's time.
type Clock struct {
	base  time.Time // the wall clock at New, without its monotonic reading
	start time.Time // the same instant, with it
}

// New reads wall (nil: time.Now) once.
func New(wall func() time.Time) *Clock {
	if wall == nil {
		wall = time.Now
	}
	return &Clock{base: wall().Round(0), start: time.Now()}
}

// Now is the wall time at New plus the monotonic time elapsed since.
func (c *Clock) Now() time.Time { return c.base.Add(time.Since(c.start)) }
