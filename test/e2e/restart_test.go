package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Group positions and acks survive a restart: after it, every unacked
// message is delivered again and no acked one is.
func TestPositionsAndAcksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	const topic = "test.e2e.restart"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"}, client.GroupSpec{Name: "bc", Mode: client.Broadcast})
	const n = 200
	publishN(t, c, topic, n)

	// Ack the odd messages only; the handler blocks on the even ones, so
	// they stay in flight, unacked, until the broker stops.
	acked := map[string]bool{}
	var mu sync.Mutex
	block := make(chan struct{})
	seen := make(chan struct{}, n)
	k, err := c.Subscribe(context.Background(), topic, "g", func(ctx context.Context, m *client.Message) error {
		seen <- struct{}{}
		var i int
		fmt.Sscanf(string(m.Body), "m%d", &i)
		if i%2 == 0 {
			<-block // never acked
			return fmt.Errorf("shutting down")
		}
		mu.Lock()
		acked[string(m.Body)] = true
		mu.Unlock()
		return nil
	}, client.Concurrency(n), client.Prefetch(n))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d messages delivered", i, n)
		}
	}
	// Wait for the broker to record the odd acks before stopping.
	dmqtest.Eventually(t, 10*time.Second, "odd messages acked", func() bool {
		g, err := c.GetGroup(context.Background(), topic, "g")
		return err == nil && g.Stats.InFlight == n/2
	})
	// Kill the broker under the consumer (the blocked handlers never ack).
	s.Stop(t)
	close(block)
	k.Close()

	s2 := dmqtest.Start(t, dir, nil)
	c2 := dmqtest.Dial(t, s2.GRPCAddr())
	rec := newRecorder()
	subscribe(t, c2, topic, "g", "after", rec.handler("after"))
	dmqtest.Eventually(t, 10*time.Second, "unacked messages redelivered", func() bool { return rec.count() >= n/2 })
	waitAcked(t, c2, topic, "g", n)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.total != n/2 {
		t.Errorf("after restart %d deliveries, want %d (the unacked ones)", rec.total, n/2)
	}
	for body := range rec.byBody {
		if acked[body] {
			t.Errorf("acked message %s delivered again after restart", body)
		}
	}

	// The topic's messages are all still stored and readable.
	tp, err := c2.GetTopic(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Stats.NextOffset != n {
		t.Errorf("after restart next offset = %d, want %d", tp.Stats.NextOffset, n)
	}
}
