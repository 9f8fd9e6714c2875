package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// Clients announce what they produce and consume; one that dies without
// saying goodbye turns offline after the heartbeat timeout and can then be
// deleted, one by one or all offline at once.
func TestClientRegistryOnlineOfflineAndDelete(t *testing.T) {
	s := dmqtest.Start(t, "", func(c *config.Config) {
		c.HeartbeatInterval, c.ClientTimeout = 50*time.Millisecond, 300*time.Millisecond
	})
	admin := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.clients.orders"
	setupTopic(t, admin, topic, client.GroupSpec{Name: "billing"})

	producer := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("order-service"))
	if _, err := producer.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// The consumer is a real process, so that it can die without a goodbye.
	consumer := exec.Command(dmqtest.Binary(t), "--server", s.GRPCAddr(), "sub", topic, "--group", "billing", "--client-id", "billing-1")
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	defer consumer.Process.Kill()

	list := func(f client.ClientFilter) map[string]bool {
		cs, err := admin.ListClients(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range cs {
			out[c.ClientId] = c.Online
		}
		return out
	}
	dmqtest.Eventually(t, 5*time.Second, "both clients online", func() bool {
		m := list(client.ClientFilter{Topic: topic})
		return m["order-service"] && m["billing-1"]
	})
	cs, _ := admin.ListClients(ctx, client.ClientFilter{Topic: topic, Group: "billing"})
	if len(cs) != 1 || cs[0].ClientId != "billing-1" || cs[0].Roles[0] != "consumer" || cs[0].Address == "" || cs[0].SdkVersion == "" {
		t.Fatalf("consumers of billing = %+v, want billing-1 with its address and SDK version", cs)
	}
	if m := list(client.ClientFilter{}); len(m) != 2 {
		t.Fatalf("registry = %v; the admin-only client must not appear", m)
	}
	if err := admin.DeleteClient(ctx, "order-service"); client.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete of an online client: %v, want FailedPrecondition", err)
	}

	// The producer leaves politely: offline at once. The consumer process
	// is killed: its heartbeats stop, and it turns offline after the timeout.
	producer.Close()
	if m := list(client.ClientFilter{}); m["order-service"] {
		t.Errorf("a client that said goodbye is still online")
	}
	consumer.Process.Kill()
	consumer.Wait()
	offline := false
	dmqtest.Eventually(t, 5*time.Second, "both clients offline", func() bool {
		m := list(client.ClientFilter{Online: &offline})
		return len(m) == 2
	})
	if err := admin.DeleteClient(ctx, "order-service"); err != nil {
		t.Fatalf("delete of an offline client: %v", err)
	}
	n, err := admin.DeleteOfflineClients(ctx)
	if err != nil || n != 1 {
		t.Fatalf("delete offline = %d, %v; want 1", n, err)
	}
	if m := list(client.ClientFilter{}); len(m) != 0 {
		t.Fatalf("registry after deletes = %v", m)
	}
}
