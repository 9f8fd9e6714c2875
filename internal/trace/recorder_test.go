package trace

import (
	"testing"

	"github.com/dmqio/dmq/internal/meta"
)

func TestCoalesceMergesAdjacentRunsOfTheSameStep(t *testing.T) {
	ev := func(kind string, off uint64, n uint32, ms int64, client string) meta.TraceEvent {
		return meta.TraceEvent{Kind: kind, Topic: "t", Group: "g", Client: client, Offset: off, Count: n, TimeMs: ms}
	}
	in := []meta.TraceEvent{
		ev(Acked, 0, 10, 100, "a"),
		ev(Delivered, 20, 5, 90, "a"),
		ev(Acked, 10, 5, 120, "a"),    // continues the first ack run
		ev(Acked, 15, 5, 110, "b"),    // another client: kept apart
		ev(Delivered, 25, 5, 90, "a"), // the same millisecond: merged
		ev(Delivered, 30, 5, 95, "a"), // later: kept apart (its messages may be published after 90)
		ev(Published, 50, 5, 80, "a"),
		ev(Published, 55, 5, 85, "a"),
		ev(Nacked, 3, 1, 130, "a"), // single events are never merged
		ev(Acked, 40, 5, 140, "a"), // not adjacent
	}
	out := coalesce(in)
	want := []meta.TraceEvent{
		ev(Acked, 0, 15, 120, "a"), // latest time for acks
		ev(Delivered, 20, 10, 90, "a"),
		ev(Acked, 15, 5, 110, "b"),
		ev(Delivered, 30, 5, 95, "a"),
		ev(Published, 50, 10, 80, "a"), // earliest for publishes
		ev(Nacked, 3, 1, 130, "a"),
		ev(Acked, 40, 5, 140, "a"),
	}
	if len(out) != len(want) {
		t.Fatalf("coalesce gave %d events, want %d: %+v", len(out), len(want), out)
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, out[i], want[i])
		}
	}
}
