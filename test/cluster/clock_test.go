package cluster_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// received is one delivery a raw subscription saw.
type received struct {
	body    string
	id      string
	attempt uint32
	at      time.Time
}

// rawSubscribe opens a subscription without the SDK's automatic acks: the test decides
// what to ack. It retries until the leader accepts it; deliveries arrive on the
// returned channel.
func rawSubscribe(t *testing.T, cl *client.Client, topic, group string) (dmqv1.Broker_SubscribeClient, <-chan received) {
	t.Helper()
	var stream dmqv1.Broker_SubscribeClient
	dmqtest.Eventually(t, 15*time.Second, "a subscription accepted by the leader", func() bool {
		var err error
		if stream, err = cl.API().Subscribe(t.Context()); err != nil {
			return false
		}
		err = stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: topic, Group: group, ClientId: "clock-test", Credit: 100}}})
		if err != nil {
			return false
		}
		resp, err := stream.Recv()
		return err == nil && resp.GetSubscribed() != nil
	})
	out := make(chan received, 100)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			for _, m := range resp.GetDeliveries().GetMessages() {
				out <- received{body: string(m.Body), id: m.Id, attempt: m.Attempt, at: time.Now()}
			}
		}
	}()
	return stream, out
}

// TestClockStepsMoveNothingOnTheLeader steps the wall clock of the node leading a
// cluster an hour back and then an hour forward while delayed messages wait and a
// delivery waits for its ack: the delayed messages come when due and in due order, the
// unacknowledged one comes back after its ack timeout (not an hour late, not at once).
// Then leadership moves to a node whose clock is a minute ahead: messages due within
// that minute are delivered at once, still in due order (due times are absolute).
func TestClockStepsMoveNothingOnTheLeader(t *testing.T) {
	offsets := map[string]*atomic.Int64{}
	c := startConfigured(t, 3, transport.NewFaults(), func(nd *node, cfg *config.Config) {
		o := offsets[nd.id]
		if o == nil {
			o = &atomic.Int64{}
			offsets[nd.id] = o
		}
		cfg.WallClock = func() time.Time { return time.Now().Add(time.Duration(o.Load())).Round(0) }
	})
	leader := c.waitLeader(nil)
	cl := c.dial()
	const topic, ackTimeout = "dev.clock.orders", 2 * time.Second
	createTopic(t, cl, topic)
	ctx := t.Context()
	if _, err := cl.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "g", AckTimeout: ackTimeout, FromEarliest: true}); err != nil {
		t.Fatal(err)
	}
	stream, deliveries := rawSubscribe(t, cl, topic, "g")

	// Five delayed messages, published latest first, due 1.5 s to 3.5 s from now, and one
	// for now that the test will not acknowledge.
	start := time.Now()
	due := map[string]time.Duration{}
	for k := 5; k >= 1; k-- {
		body := fmt.Sprintf("d%d", k)
		due[body] = 1500*time.Millisecond + time.Duration(k-1)*500*time.Millisecond
		if _, err := cl.Publish(ctx, topic, (&client.Message{Body: []byte(body)}).WithDelay(due[body])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Publish(ctx, topic, &client.Message{Body: []byte("unacked")}); err != nil {
		t.Fatal(err)
	}
	offsets[leader.id].Store(int64(-time.Hour))
	time.AfterFunc(time.Second, func() { offsets[leader.id].Store(int64(time.Hour)) })

	var order []string
	var firstUnacked, again time.Time
	for len(order) < 5 || again.IsZero() {
		select {
		case r := <-deliveries:
			if r.body != "unacked" || r.attempt > 1 {
				stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Ack{Ack: &dmqv1.AckIds{Ids: []string{r.id}}}})
			}
			switch {
			case r.body == "unacked" && r.attempt == 1:
				firstUnacked = r.at
			case r.body == "unacked":
				again = r.at
			default:
				if early := due[r.body] - r.at.Sub(start); early > 50*time.Millisecond {
					t.Fatalf("%s delivered %v before its due time", r.body, early)
				}
				if late := r.at.Sub(start) - due[r.body]; late > 2*time.Second {
					t.Fatalf("%s delivered %v after its due time", r.body, late)
				}
				order = append(order, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("after the clock steps: delivered %v, unacked first at %v, again at %v; nothing more for 10 s", order, firstUnacked, again)
		}
	}
	if fmt.Sprint(order) != "[d1 d2 d3 d4 d5]" {
		t.Fatalf("delayed messages delivered in the order %v", order)
	}
	if d := again.Sub(firstUnacked); d < ackTimeout-100*time.Millisecond || d > ackTimeout+3*time.Second {
		t.Fatalf("the unacknowledged message came back after %v, with a %v ack timeout", d, ackTimeout)
	}
	t.Logf("unacknowledged message redelivered %v after the first delivery (ack timeout %v), across clock steps of -1h and +1h", again.Sub(firstUnacked).Round(time.Millisecond), ackTimeout)
	stream.CloseSend()

	// A new leader whose clock is a minute ahead delivers what is due within the minute
	// at once, in due order.
	var ahead *node
	for _, nd := range c.nodes {
		if nd != leader {
			ahead = nd
		}
	}
	offsets[ahead.id].Store(int64(time.Minute))
	for k := 3; k >= 1; k-- {
		body := fmt.Sprintf("e%d", k)
		if _, err := cl.Publish(ctx, topic, (&client.Message{Body: []byte(body)}).WithDelay(20*time.Second+time.Duration(k)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post("http://"+leader.http+"/api/v1/cluster/leader", "application/json", bytes.NewReader([]byte(`{"to":"`+ahead.id+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("transfer leadership to %s: %s", ahead.id, resp.Status)
	}
	moved := time.Now()
	stream2, deliveries2 := rawSubscribe(t, cl, topic, "g")
	defer stream2.CloseSend()
	order = nil
	for len(order) < 3 {
		select {
		case r := <-deliveries2:
			order = append(order, r.body)
		case <-time.After(10 * time.Second):
			t.Fatalf("on the new leader a minute ahead, delivered %v; nothing more for 10 s (due in 21-23 s by the old leader's clock)", order)
		}
	}
	if fmt.Sprint(order) != "[e1 e2 e3]" {
		t.Fatalf("on the new leader, delayed messages delivered in the order %v", order)
	}
	t.Logf("on the new leader (clock 1m ahead) the messages due in 21-23 s came %v after the move, in due order", time.Since(moved).Round(time.Millisecond))
}
