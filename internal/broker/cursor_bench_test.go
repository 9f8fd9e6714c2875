package broker

import (
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/meta"
)

// BenchmarkCursor measures the delivery state machine per message (one op
// is one message): take, deliver, ack and the takeUpdate that collects the
// change for persistence, driven the way group.go's dispatch pass
// (fillLocked: up to maxPickBatch per session, then expire and nextWake) and
// its ack call (ack a batch, then persistLocked) drive them. Log reads, the
// group lock, pushes to sessions and metadata writes are not included.
//
// With two consumers the acks of the second session's batch arrive before
// those of the first, so the floor waits and acked offsets pile up above it,
// as in W3 of issue 9.
func BenchmarkCursor(b *testing.B) {
	ackTimeout := int64(30 * time.Second)
	cases := []struct {
		name     string
		sessions int
		autoAck  bool
		ackBatch int // offsets per ack call
	}{
		{"business-ack/1-consumer", 1, false, 64},
		{"business-ack/2-consumers-out-of-order", 2, false, 64},
		{"business-ack/1-consumer/ack-each", 1, false, 1},
		{"auto-ack", 1, true, 0},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			p := &policy{autoAck: bc.autoAck, ackTimeout: ackTimeout, backoff: []int64{int64(time.Second)}, maxAttempts: 16}
			c := newCursor(meta.Cursor{})
			sessions := make([]*Subscription, bc.sessions)
			for i := range sessions {
				sessions[i] = &Subscription{clientID: "bench", cur: c}
			}
			const window = 100_000 // the broker's default MaxUnacked
			end := uint64(b.N) + window
			batches := make([][]uint64, bc.sessions)
			now := int64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				now += int64(time.Millisecond)
				for i, s := range sessions {
					batches[i] = batches[i][:0]
					for len(batches[i]) < min(maxPickBatch, b.N-done) {
						off, ok := c.take(now, end, window, nil, false)
						if !ok {
							b.Fatalf("take found nothing after %d messages", done)
						}
						c.deliver(off, s, now, p)
						batches[i] = append(batches[i], off)
					}
					done += len(batches[i])
				}
				c.expire(now, p)
				c.nextWake()
				if bc.autoAck {
					c.takeUpdate(now / 1e6)
					continue
				}
				for i := len(batches) - 1; i >= 0; i-- {
					for offs := batches[i]; len(offs) > 0; {
						k := min(bc.ackBatch, len(offs))
						for _, off := range offs[:k] {
							c.ack(off)
						}
						c.takeUpdate(now / 1e6)
						offs = offs[k:]
					}
				}
			}
			b.StopTimer()
			if c.floor != uint64(b.N) {
				b.Fatalf("floor %d after %d messages, want every one acked", c.floor, b.N)
			}
		})
	}
}

// BenchmarkRedeliverMany times handing out again 10,000 deliveries that
// timed out at once (a consumer gone with a full window): each take must
// stay O(1), not scan or shift the whole waiting list.
func BenchmarkRedeliverMany(b *testing.B) {
	p := &policy{ackTimeout: 10, maxAttempts: 1 << 20}
	a, other := &Subscription{clientID: "a", credit: 1 << 30}, &Subscription{clientID: "b", credit: 1 << 30}
	const n = 10_000
	for b.Loop() {
		c := newCursor(meta.Cursor{})
		c.sessions = []*Subscription{a, other}
		for off := uint64(0); off < n; off++ {
			c.take(0, n, n, a, false)
			c.deliver(off, a, 0, p)
		}
		c.expire(100, p)
		for k := 0; k < n; k++ {
			if _, ok := c.take(100, n, n, other, true); !ok {
				b.Fatalf("redelivery %d missing", k)
			}
		}
	}
}
