package stats

import (
	"fmt"
	"testing"
	"time"
)

// However many client ids publish in one minute, a topic keeps at most
// MaxClientsPerMinute of them apart plus one record for the rest, and no
// count is lost.
func TestClientsPerMinuteAreBounded(t *testing.T) {
	r := New("s1")
	now := time.UnixMilli(10 * MinuteMs)
	r.now = func() time.Time { return now }
	const clients = MaxClientsPerMinute + 500
	for i := 0; i < clients; i++ {
		r.Produced("test.a.b", fmt.Sprint("client-", i), 2)
	}
	r.Produced("test.a.b", "client-7", 1) // a known client keeps its own record
	r.Produced("test.a.c", "client-x", 1) // another topic has its own bound
	now = now.Add(time.Minute)
	got := map[string]uint64{}
	records := map[string]int{}
	for _, c := range r.TakeFinished(false) {
		got[c.Topic] += c.Produced
		records[c.Topic]++
		if c.Client == "client-7" && c.Produced != 3 {
			t.Errorf("client-7 produced %d, want 3", c.Produced)
		}
		if c.Client == OtherClients && c.Produced != 2*500 {
			t.Errorf("%s produced %d, want %d", OtherClients, c.Produced, 2*500)
		}
	}
	if got["test.a.b"] != 2*clients+1 || got["test.a.c"] != 1 {
		t.Fatalf("produced = %v, want %d and 1", got, 2*clients+1)
	}
	if records["test.a.b"] != MaxClientsPerMinute+1 {
		t.Fatalf("%d records for test.a.b, want %d", records["test.a.b"], MaxClientsPerMinute+1)
	}
	// The next minute starts with room for new clients again.
	r.Produced("test.a.b", "client-new", 1)
	now = now.Add(time.Minute)
	if cs := r.TakeFinished(false); len(cs) != 1 || cs[0].Client != "client-new" {
		t.Fatalf("next minute = %+v, want client-new on its own", cs)
	}
}
