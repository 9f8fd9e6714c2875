package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

func kinds(es []*dmqv1.TraceEvent) string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Kind)
	}
	return strings.Join(ks, ", ")
}

// A message published, nacked once and acked shows exactly those events in
// order, found by id and by business key; a delayed message shows its
// schedule and the step into the log; a cancelled one its cancellation.
func TestTraceShowsTheLifeOfAMessage(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("order-service"))
	ctx := context.Background()
	const topic = "test.trace.orders"
	setupTopic(t, c, topic, client.GroupSpec{Name: "billing", RetryBackoff: []time.Duration{10 * time.Millisecond}})
	var failed atomic.Bool
	consumer := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("billing-7"))
	subscribe(t, consumer, topic, "billing", "billing-7", func(_ context.Context, m *client.Message) error {
		if m.Key == "order-42" && failed.CompareAndSwap(false, true) {
			return fmt.Errorf("card declined")
		}
		return nil
	})
	start := time.Now()
	publishN(t, c, topic, 10) // traffic around it
	rs, err := c.Publish(ctx, topic, &client.Message{Key: "order-42", Body: []byte("charge")})
	if err != nil {
		t.Fatal(err)
	}
	id := rs[0].ID
	waitAcked(t, c, topic, "billing", 11)

	var tr *dmqv1.MessageTrace
	dmqtest.Eventually(t, 10*time.Second, "the full trace", func() bool {
		tr, err = c.Trace(ctx, topic, id)
		return err == nil && len(tr.Events) >= 5
	})
	if got, want := kinds(tr.Events), "published, delivered, nacked, delivered, acked"; got != want {
		t.Fatalf("trace of %s = %s, want %s", id, got, want)
	}
	ev := tr.Events
	if ev[0].ClientId != "order-service" || ev[0].Address == "" {
		t.Errorf("published event = %+v, want the producer's client id and address", ev[0])
	}
	if ev[1].Group != "billing" || ev[1].ClientId != "billing-7" || ev[1].Attempt != 1 {
		t.Errorf("first delivery = %+v, want group billing, client billing-7, attempt 1", ev[1])
	}
	if ev[2].Reason != "card declined" || ev[3].Attempt != 2 {
		t.Errorf("nack = %+v, redelivery = %+v; want the reason and attempt 2", ev[2], ev[3])
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].TimeMs < ev[i-1].TimeMs {
			t.Errorf("events out of time order: %v", ev)
		}
	}

	found, err := c.SearchTrace(ctx, topic, "order-42", start.Add(-time.Minute), time.Now().Add(time.Minute), 10)
	if err != nil || len(found) != 1 || found[0].Id != id || kinds(found[0].Events) != kinds(ev) {
		t.Fatalf("search by key = %v, %v; want the one message %s with the same events", found, err, id)
	}

	// Delayed: scheduled, then due (with its log id), then delivered and acked.
	dl, err := c.Publish(ctx, topic, (&client.Message{Key: "order-43", Body: []byte("close")}).WithDelay(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "the delayed message's trace", func() bool {
		tr, err = c.Trace(ctx, topic, dl[0].ID)
		return err == nil && strings.HasSuffix(kinds(tr.Events), "acked")
	})
	if got := kinds(tr.Events); got != "scheduled, due, delivered, acked" {
		t.Fatalf("delayed trace = %s", got)
	}
	if tr.Events[1].MessageId == "" {
		t.Errorf("due event does not name the message id: %+v", tr.Events[1])
	}
	cancelled, err := c.Publish(ctx, topic, (&client.Message{Body: []byte("never")}).WithDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CancelDelayed(ctx, topic, cancelled[0].ID); err != nil {
		t.Fatal(err)
	}
	tr, err = c.Trace(ctx, topic, cancelled[0].ID)
	if err != nil || kinds(tr.Events) != "scheduled, cancelled" {
		t.Fatalf("cancelled trace = %v, %v", tr, err)
	}

	// Bad queries.
	if _, err := c.SearchTrace(ctx, topic, "order-42", time.Time{}, time.Now(), 10); client.Code(err) != codes.InvalidArgument {
		t.Errorf("search without a range: %v, want InvalidArgument", err)
	}
	if _, err := c.Trace(ctx, topic, "999999"); client.Code(err) != codes.NotFound {
		t.Errorf("trace of an unknown id: %v, want NotFound", err)
	}
}
