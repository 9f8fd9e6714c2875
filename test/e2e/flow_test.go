package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// recvDeliveries reads from a raw subscription until n messages arrived.
func recvDeliveries(t *testing.T, st dmqv1.Broker_SubscribeClient, n int) []*dmqv1.Message {
	t.Helper()
	var got []*dmqv1.Message
	for len(got) < n {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d messages: %v", len(got), n, err)
		}
		if e := r.GetError(); e != nil {
			t.Fatalf("stream error: %v", e)
		}
		got = append(got, r.GetDeliveries().GetMessages()...)
	}
	if len(got) != n {
		t.Fatalf("received %d messages, want exactly %d: the broker sent more than the credit", len(got), n)
	}
	return got
}

// The broker never sends more messages than the consumer granted credits.
func TestBrokerNeverSendsMoreThanTheCreditGranted(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	const topic = "test.flow.credit"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	publishN(t, c, topic, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.API().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: topic, Group: "g", ClientId: "raw", Credit: 5}}})
	if r, err := st.Recv(); err != nil || r.GetSubscribed() == nil {
		t.Fatalf("start: %v %v", r, err)
	}
	first := recvDeliveries(t, st, 5)
	inFlight := func() uint64 {
		g, err := c.GetGroup(ctx, topic, "g")
		if err != nil {
			t.Fatal(err)
		}
		return g.Stats.InFlight
	}
	// In flight counts what the dispatcher handed out: exactly the credit.
	// Give it time to overshoot if it were going to.
	time.Sleep(100 * time.Millisecond)
	if n := inFlight(); n != 5 {
		t.Fatalf("with 5 credits, %d messages in flight", n)
	}
	// Acks do not grant credit by themselves.
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Ack{Ack: &dmqv1.AckIds{Ids: []string{first[0].Id, first[1].Id}}}})
	dmqtest.Eventually(t, 5*time.Second, "acks applied", func() bool { return inFlight() == 3 })
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: 3}})
	more := recvDeliveries(t, st, 3)
	if more[0].Id != "5" {
		t.Fatalf("after more credit got id %s first, want 5 (in order)", more[0].Id)
	}
	time.Sleep(100 * time.Millisecond)
	if n := inFlight(); n != 6 {
		t.Fatalf("after 3 more credits, %d in flight, want 6", n)
	}
}

// Deleting a topic ends its subscriptions with NotFound and removes its
// data; the name can be created again, empty.
func TestDeleteTopicEndsSubscriptionsAndRemovesData(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	const topic = "test.flow.deleted"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	publishN(t, c, topic, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.API().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: topic, Group: "g", ClientId: "x"}}})
	if r, err := st.Recv(); err != nil || r.GetSubscribed() == nil {
		t.Fatalf("start: %v %v", r, err)
	}
	if err := c.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); client.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "was deleted") {
		t.Fatalf("subscription after delete: %v, want NotFound ... was deleted", err)
	}
	if _, err := c.GetGroup(ctx, topic, "g"); client.Code(err) != codes.NotFound {
		t.Fatalf("GetGroup after delete: %v", err)
	}
	if err := c.DeleteTopic(ctx, topic); client.Code(err) != codes.NotFound {
		t.Fatalf("second delete: %v, want NotFound", err)
	}
	setupTopic(t, c, topic)
	tp, err := c.GetTopic(ctx, topic)
	if err != nil || tp.Stats.NextOffset != 0 || tp.Stats.StoredBytes != 0 {
		t.Fatalf("recreated topic = %v, %v; want empty", tp, err)
	}
}
