package fault_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// healthy checks that a normal client still publishes and consumes.
func healthy(t *testing.T, addr, group string) {
	t.Helper()
	c := dmqtest.Dial(t, addr)
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: group, FromEarliest: true}); err != nil {
		t.Fatalf("create group while abused: %v", err)
	}
	if _, err := c.Publish(ctx, topicName, &client.Message{Body: []byte("still " + group)}); err != nil {
		t.Fatalf("publish while abused: %v", err)
	}
	got := make(chan string, 1)
	k, err := c.Subscribe(ctx, topicName, group, func(_ context.Context, m *client.Message) error {
		if string(m.Body) == "still "+group {
			select {
			case got <- string(m.Body):
			default:
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("subscribe while abused: %v", err)
	}
	defer k.Close()
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatalf("a normal consumer did not get its message while the broker was abused")
	}
}

func rss(t *testing.T, addr string) int64 {
	t.Helper()
	c := dmqtest.Dial(t, addr)
	info, err := c.API().ServerInfo(context.Background(), &dmqv1.ServerInfoRequest{})
	if err != nil {
		t.Fatalf("server info: %v", err)
	}
	return info.RssBytes
}

// Garbage on both ports, half-open connections, a flood of connections and
// subscriptions, and a consumer that never reads its stream: the broker
// stays up, other clients keep working, and its memory stays bounded.
func TestAbuseLeavesTheBrokerServing(t *testing.T) {
	p := dmqtest.StartProcess(t, t.TempDir(), "--no-trace")
	c := dmqtest.Dial(t, p.Addr)
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	baseline := rss(t, p.Addr)

	// Random bytes on both ports, and connections that say nothing.
	rng := rand.New(rand.NewPCG(1, 2))
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		for _, addr := range []string{p.Addr, p.HTTP} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("connection %d to %s refused: %v", i, addr, err)
			}
			if i%4 == 0 {
				idle = append(idle, conn) // half-open: connected, silent
				continue
			}
			junk := make([]byte, 1+rng.IntN(4096))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			conn.Write(junk)
			conn.Close()
		}
	}
	healthy(t, p.Addr, "after-garbage")

	// A flood: 100 connections with 5 subscriptions each, all on one group.
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: "flood"}); err != nil {
		t.Fatal(err)
	}
	var consumers []*client.Consumer
	for i := 0; i < 100; i++ {
		fc, err := client.Dial(p.Addr, client.WithClientID(fmt.Sprint("flood-", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		for j := 0; j < 5; j++ {
			k, err := fc.Subscribe(ctx, topicName, "flood", func(context.Context, *client.Message) error { return nil })
			if err != nil {
				t.Fatalf("subscription %d/%d: %v", i, j, err)
			}
			consumers = append(consumers, k)
		}
	}
	healthy(t, p.Addr, "during-flood")

	// A consumer that grants credit and never reads its stream, while
	// 20,000 messages of 1 KiB go by for it and for a normal group.
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: "stuck"}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := dmqv1.NewBrokerClient(conn).Subscribe(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: topicName, Group: "stuck", Credit: 1000}}}); err != nil {
		t.Fatal(err)
	}
	prod := c.NewProducer(topicName)
	var wg sync.WaitGroup
	for i := 0; i < 20000; i++ {
		wg.Add(1)
		if err := prod.PublishAsync(ctx, &client.Message{Body: make([]byte, 1024)}, func(_ client.PublishResult, err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	prod.Close()
	healthy(t, p.Addr, "past-a-stuck-consumer")
	g, err := c.GetGroup(ctx, topicName, "stuck")
	if err != nil {
		t.Fatal(err)
	}
	if g.Stats.InFlight > 1000 {
		t.Fatalf("the stuck consumer has %d messages in flight, beyond its credit of 1000", g.Stats.InFlight)
	}
	for _, k := range consumers {
		k.Close()
	}
	after := rss(t, p.Addr)
	t.Logf("broker RSS %d MB before the abuse, %d MB after (the test binary is race-enabled unless DMQTEST_NORACE is set)", baseline>>20, after>>20)
	if after > baseline+512<<20 {
		t.Fatalf("broker RSS grew from %d MB to %d MB", baseline>>20, after>>20)
	}
	select {
	case <-p.Done():
		t.Fatalf("the broker exited:\n%s", p.Logs())
	default:
	}
}
