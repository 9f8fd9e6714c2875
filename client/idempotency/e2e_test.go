package idempotency_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/client/idempotency"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// waitSettled waits until group acked the first n messages of topic and
// has nothing in flight nor in its backlog.
func waitSettled(t *testing.T, c *client.Client, topic, group string, n uint64) {
	t.Helper()
	dmqtest.Eventually(t, 20*time.Second, fmt.Sprintf("group %s to ack %d messages", group, n), func() bool {
		g, err := c.GetGroup(context.Background(), topic, group)
		if err != nil {
			t.Fatalf("GetGroup(%s, %s): %v", topic, group, err)
		}
		return g.Stats.AckFloor >= n && g.Stats.InFlight == 0 && g.Stats.Backlog == 0
	})
}

// A handler wrapped with a FileStore runs once per business key although
// the key arrives in several messages, once more as a producer
// retransmission, and again after the consumer restarted; every delivery is
// acked.
func TestWrapRunsHandlerOncePerKeyAcrossConsumerRestart(t *testing.T) {
	const topic, group = "test.idem.orders", "billing"
	ctx := context.Background()
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "billing.idem")

	var mu sync.Mutex
	runs := map[string]int{} // by key, or by id for keyless messages
	duplicates := 0
	handler := func(_ context.Context, m *client.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Key != "" {
			runs[m.Key]++
		} else {
			runs["id:"+m.ID]++
		}
		return nil
	}
	// consume runs a consumer (with a fresh store handle) until the group
	// acked published messages, then closes both: one consumer lifetime.
	consume := func(published uint64) {
		t.Helper()
		store, err := idempotency.OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		h := idempotency.Wrap(store, handler, idempotency.OnDuplicate(func(*client.Message) {
			mu.Lock()
			duplicates++
			mu.Unlock()
		}))
		k, err := c.Subscribe(ctx, topic, group, h, client.Concurrency(4))
		if err != nil {
			t.Fatal(err)
		}
		waitSettled(t, c, topic, group, published)
		if err := k.Close(); err != nil {
			t.Fatalf("consumer Close: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Fatalf("store Close: %v", err)
		}
	}
	publish := func(m *client.Message) string {
		t.Helper()
		ids, err := c.Publish(ctx, topic, m)
		if err != nil {
			t.Fatalf("Publish(%s): %v", m.Key, err)
		}
		return ids[0].ID
	}

	pay := &client.Message{Key: "order-1", Body: []byte("pay order-1")}
	publish(pay)
	publish(&client.Message{Key: "order-1", Body: []byte("pay order-1, second message")})
	// A retransmission of the first message that the broker's duplicate
	// window cannot catch: a new Publish call gets a new client message id
	// (as after a producer restart), so the broker stores a second copy.
	publish(pay)
	publish(&client.Message{Key: "order-2", Body: []byte("pay order-2")})
	keyless1 := publish(&client.Message{Body: []byte("no key")})
	consume(5)

	// The consumer restarted: the same keys arrive again.
	publish(pay)
	publish(&client.Message{Key: "order-2", Body: []byte("pay order-2 again")})
	keyless2 := publish(&client.Message{Body: []byte("no key")})
	consume(8)

	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"order-1": 1, "order-2": 1, "id:" + keyless1: 1, "id:" + keyless2: 1}
	if fmt.Sprint(runs) != fmt.Sprint(want) {
		t.Fatalf("handler runs by key = %v, want %v", runs, want)
	}
	if duplicates != 4 {
		t.Fatalf("%d deliveries acked as duplicates, want 4 (order-1 twice before the restart, order-1 and order-2 after)", duplicates)
	}
}
