package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// A prod topic is refused for publishing and subscribing until approved,
// not by its requester; a disabled topic is refused again.
func TestProdTopicNeedsApprovalBeforeUse(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "prod.suyun.orders"
	tp, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, Department: "suyun", Owner: "alice", Purpose: "orders", RequestedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Status != "pending" || tp.Environment != "prod" || tp.RequestedBy != "alice" {
		t.Fatalf("new prod topic = %s/%s/%s, want pending, prod, requested by alice", tp.Status, tp.Environment, tp.RequestedBy)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "g"}); err != nil {
		t.Fatal(err)
	}
	msg := &client.Message{Body: []byte("x")}
	if _, err := c.Publish(ctx, topic, msg); client.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "pending approval") {
		t.Fatalf("publish to pending topic: %v, want FailedPrecondition ... pending approval", err)
	}
	if _, err := c.Subscribe(ctx, topic, "g", func(context.Context, *client.Message) error { return nil }); client.Code(err) != codes.FailedPrecondition {
		t.Fatalf("subscribe to pending topic: %v, want FailedPrecondition", err)
	}
	if _, err := c.ApproveTopic(ctx, topic, "alice", ""); client.Code(err) != codes.PermissionDenied {
		t.Fatalf("self-approval: %v, want PermissionDenied", err)
	}
	if _, err := c.ApproveTopic(ctx, "prod.no.such", "bob", ""); client.Code(err) != codes.NotFound {
		t.Fatalf("approve of a missing topic: %v, want NotFound", err)
	}
	tp, err = c.ApproveTopic(ctx, topic, "bob", "looks fine")
	if err != nil || tp.Status != "approved" || tp.DecidedBy != "bob" || tp.DecidedAtMs == 0 {
		t.Fatalf("approve = %+v, %v", tp, err)
	}
	if _, err := c.Publish(ctx, topic, msg); err != nil {
		t.Fatalf("publish after approval: %v", err)
	}
	if _, err := c.RejectTopic(ctx, topic, "bob", ""); client.Code(err) != codes.FailedPrecondition {
		t.Fatalf("reject of an approved topic: %v, want FailedPrecondition", err)
	}
	if _, err := c.DisableTopic(ctx, topic, "bob", "migrating"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, topic, msg); client.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "migrating") {
		t.Fatalf("publish to disabled topic: %v, want FailedPrecondition with the reason", err)
	}
	// The decision survives a restart.
	s.Stop(t)
	s = dmqtest.Start(t, dir, nil)
	c = dmqtest.Dial(t, s.GRPCAddr())
	tp, err = c.GetTopic(ctx, topic)
	if err != nil || tp.Status != "disabled" || tp.Stats.NextOffset != 1 {
		t.Fatalf("after disable: %+v, %v", tp, err)
	}
}

// The registry filters by department, owner, environment, status and name.
func TestTopicRegistryFilters(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	for _, spec := range []client.TopicSpec{
		{Name: "prod.suyun.orders", Department: "suyun", Owner: "alice"},
		{Name: "prod.suyun.payments", Department: "suyun", Owner: "bob"},
		{Name: "test.suyun.orders", Department: "suyun", Owner: "alice"},
		{Name: "prod.mail.outbox", Department: "mail", Owner: "carol"},
	} {
		spec.RequestedBy = spec.Owner
		if _, err := c.CreateTopic(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ApproveTopic(ctx, "prod.mail.outbox", "admin", ""); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		f    client.TopicFilter
		want string
	}{
		{client.TopicFilter{}, "prod.mail.outbox,prod.suyun.orders,prod.suyun.payments,test.suyun.orders"},
		{client.TopicFilter{Department: "suyun"}, "prod.suyun.orders,prod.suyun.payments,test.suyun.orders"},
		{client.TopicFilter{Owner: "alice"}, "prod.suyun.orders,test.suyun.orders"},
		{client.TopicFilter{Environment: "test"}, "test.suyun.orders"},
		{client.TopicFilter{Status: "pending"}, "prod.suyun.orders,prod.suyun.payments"},
		{client.TopicFilter{Status: "approved", Environment: "prod"}, "prod.mail.outbox"},
		{client.TopicFilter{NameContains: "orders", Environment: "prod"}, "prod.suyun.orders"},
		{client.TopicFilter{Department: "nobody"}, ""},
	}
	for _, tc := range cases {
		ts, err := c.ListTopics(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tp := range ts {
			names = append(names, tp.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("ListTopics(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}
