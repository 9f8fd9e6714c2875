package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// A message published twice with the same client message id is stored
// once; the second reply names the first id. The window survives a restart
// and ends after its duration.
func TestDuplicateClientMessageIDStoredOnce(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.dedupe.orders"
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, DedupeWindow: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	msg := func(id, body string) *client.Message {
		return &client.Message{ClientMessageID: id, Body: []byte(body)}
	}
	first, err := c.Publish(ctx, topic, msg("order-1", "a"))
	if err != nil || first[0].Duplicate {
		t.Fatalf("first publish = %+v, %v", first, err)
	}
	again, err := c.Publish(ctx, topic, msg("order-1", "a"), msg("order-2", "b"), msg("order-2", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].ID != first[0].ID {
		t.Errorf("resend of order-1 = %+v, want duplicate of %s", again[0], first[0].ID)
	}
	if again[1].Duplicate || !again[2].Duplicate || again[2].ID != again[1].ID {
		t.Errorf("order-2 twice in one batch = %+v, %+v; want stored once, then duplicate", again[1], again[2])
	}
	// Through a pipelined producer too.
	p := c.NewProducer(topic)
	r, err := p.Publish(ctx, msg("order-2", "b"))
	p.Close()
	if err != nil || !r.Duplicate || r.ID != again[1].ID {
		t.Errorf("producer resend of order-2 = %+v, %v; want duplicate of %s", r, err, again[1].ID)
	}

	// The window is durable: rebuilt after a restart.
	s.Stop(t)
	s = dmqtest.Start(t, dir, nil)
	c = dmqtest.Dial(t, s.GRPCAddr())
	rs, err := c.Publish(ctx, topic, msg("order-1", "a"))
	if err != nil || !rs[0].Duplicate || rs[0].ID != first[0].ID {
		t.Fatalf("resend after restart = %+v, %v; want duplicate of %s", rs, err, first[0].ID)
	}
	tp, _ := c.GetTopic(ctx, topic)
	if tp.Stats.NextOffset != 2 {
		t.Fatalf("topic stores %d messages, want 2", tp.Stats.NextOffset)
	}
	// After the window the id is forgotten.
	dmqtest.Eventually(t, 10*time.Second, "the duplicate window to pass", func() bool {
		rs, err := c.Publish(ctx, topic, msg("order-1", "a"))
		return err == nil && !rs[0].Duplicate
	})
}

// A producer keeps publishing while its broker is killed with SIGKILL and
// restarted: with retransmission under the same client message ids, every
// message ends up stored exactly once.
func TestRetransmissionThroughKilledBrokerStoresEachMessageOnce(t *testing.T) {
	const topic = "test.dedupe.kill"
	const producers, perProducer = 3, 6000
	dir := t.TempDir()
	addr := dmqtest.FreePort(t)
	p := dmqtest.StartProcess(t, dir, "--listen", addr)
	c, err := client.Dial(addr, client.WithRetry(client.RetryPolicy{Attempts: 200, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	setupTopic(t, c, topic)

	var mu sync.Mutex
	idOf := map[string]string{} // body → id from the publish reply
	var duplicates, failures atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prod := c.NewProducer(topic, client.MaxInFlight(300))
			defer prod.Close()
			for seq := 0; seq < perProducer; seq++ {
				body := fmt.Sprintf("p%d-%d", i, seq)
				err := prod.PublishAsync(context.Background(), &client.Message{Body: []byte(body)}, func(r client.PublishResult, err error) {
					if err != nil {
						failures.Add(1)
						t.Errorf("publish %s gave up: %v", body, err)
						return
					}
					if r.Duplicate {
						duplicates.Add(1)
					}
					mu.Lock()
					idOf[body] = r.ID
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("PublishAsync: %v", err)
					return
				}
			}
		}()
	}
	// Kill the broker twice while the producers run, and restart it.
	for kill := 0; kill < 2; kill++ {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		p.Kill()
		p = dmqtest.StartProcess(t, dir, "--listen", addr)
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d publishes gave up", failures.Load())
	}
	t.Logf("%d duplicate replies (retransmissions the broker had already stored)", duplicates.Load())

	const total = producers * perProducer
	tp, err := c.GetTopic(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := tp.Stats.NextOffset - tp.Stats.FirstOffset; n != total {
		t.Fatalf("topic stores %d messages for %d published: duplicates were stored", n, total)
	}
	got := readAll(t, c, topic, "verify", total)
	seen := map[string]string{}
	for id, body := range got {
		if prev, ok := seen[body]; ok {
			t.Fatalf("%s stored twice, as %s and %s", body, prev, id)
		}
		seen[body] = id
	}
	mu.Lock()
	defer mu.Unlock()
	for body, id := range idOf {
		if seen[body] != id {
			t.Fatalf("%s: publish reply said id %s, stored as %s", body, id, seen[body])
		}
	}
	p.Stop(t)
}

// A consumer process killed with SIGKILL in the middle of its handler: the
// message is redelivered to another member with attempt 2.
func TestConsumerKilledMidHandlerMessageGoesToAnotherMember(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	const topic = "test.reliable.killconsumer"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	if _, err := c.Publish(context.Background(), topic, &client.Message{Key: "order-7", Body: []byte("ship")}); err != nil {
		t.Fatal(err)
	}
	// `dmq sub --no-ack` is a real consumer process whose handler holds the message.
	cmd := exec.Command(dmqtest.Binary(t), "--server", s.GRPCAddr(), "sub", topic, "--group", "g", "--no-ack", "--client-id", "doomed")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 20*time.Second, "the consumer process to hold the message", func() bool {
		g, err := c.GetGroup(context.Background(), topic, "g")
		return err == nil && g.Stats.InFlight == 1
	})
	cmd.Process.Kill()
	cmd.Wait()

	got := make(chan *client.Message, 1)
	subscribe(t, c, topic, "g", "survivor", func(_ context.Context, m *client.Message) error {
		got <- m
		return nil
	})
	select {
	case m := <-got:
		if m.Attempt != 2 || string(m.Body) != "ship" || m.LastFailure != "consumer disconnected" {
			t.Fatalf("redelivery = attempt %d body %q last failure %q, want attempt 2 of ship after a disconnect", m.Attempt, m.Body, m.LastFailure)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not redelivered after the consumer process was killed")
	}
	waitAcked(t, c, topic, "g", 1)
}

// A handler that always fails moves the message to the dead letters after
// max attempts; a redrive brings it back and it is then acked.
func TestAlwaysFailingMessageDeadLetteredThenRedriven(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.reliable.dlq"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g", MaxAttempts: 3, RetryBackoff: []time.Duration{10 * time.Millisecond}})
	var healthy atomic.Bool
	var deliveries atomic.Int32
	subscribe(t, c, topic, "g", "c1", func(_ context.Context, m *client.Message) error {
		deliveries.Add(1)
		if string(m.Body) == "poison" && !healthy.Load() {
			return fmt.Errorf("cannot parse %q", m.Body)
		}
		return nil
	})
	rs, err := c.Publish(ctx, topic, &client.Message{Key: "k1", Headers: map[string]string{"h": "v"}, Body: []byte("poison")}, &client.Message{Body: []byte("fine")})
	if err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "the poison message to be dead-lettered", func() bool {
		g, err := c.GetGroup(ctx, topic, "g")
		return err == nil && g.Stats.DeadLetters == 1 && g.Stats.AckFloor == 2
	})
	if n := deliveries.Load(); n != 4 {
		t.Errorf("%d deliveries, want 3 of poison and 1 of fine", n)
	}
	page, err := c.ListDeadLetters(ctx, topic, "g", "", 10, "")
	if err != nil || page.Total != 1 || len(page.DeadLetters) != 1 {
		t.Fatalf("ListDeadLetters = %+v, %v", page, err)
	}
	d := page.DeadLetters[0]
	if d.Message.Id != rs[0].ID || d.Attempts != 3 || !strings.Contains(d.LastFailure, "cannot parse") ||
		d.Message.Key != "k1" || d.Message.Headers["h"] != "v" || string(d.Message.Body) != "poison" {
		t.Fatalf("dead letter = %+v, want id %s after 3 attempts with key, headers and reason", d, rs[0].ID)
	}

	// Redrive of an id that is not a dead letter, and of an empty selection: clear errors.
	if _, err := c.RedriveDeadLetters(ctx, topic, "g", client.DeadLetters{IDs: []string{rs[1].ID}}); client.Code(err) != codes.NotFound {
		t.Errorf("redrive of a non-dead letter: %v, want NotFound", err)
	}
	if _, err := c.RedriveDeadLetters(ctx, topic, "g", client.DeadLetters{}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("redrive with no selector: %v, want InvalidArgument", err)
	}

	healthy.Store(true)
	n, err := c.RedriveDeadLetters(ctx, topic, "g", client.DeadLetters{IDs: []string{rs[0].ID}})
	if err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	dmqtest.Eventually(t, 10*time.Second, "the redriven message to be acked", func() bool {
		g, err := c.GetGroup(ctx, topic, "g")
		return err == nil && g.Stats.DeadLetters == 0 && g.Stats.InFlight == 0
	})
	if n := deliveries.Load(); n != 5 {
		t.Errorf("%d deliveries after the redrive, want 5", n)
	}
	if _, err := c.RedriveDeadLetters(ctx, topic, "g", client.DeadLetters{All: true}); client.Code(err) != codes.FailedPrecondition {
		t.Errorf("redrive of an empty queue: %v, want FailedPrecondition", err)
	}
}

// Dead letters and redriven messages survive a restart.
func TestDeadLettersSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.reliable.dlqrestart"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g", MaxAttempts: 1})
	k := subscribe(t, c, topic, "g", "c1", func(context.Context, *client.Message) error { return fmt.Errorf("no") })
	publishN(t, c, topic, 3)
	dmqtest.Eventually(t, 10*time.Second, "3 dead letters", func() bool {
		g, err := c.GetGroup(ctx, topic, "g")
		return err == nil && g.Stats.DeadLetters == 3
	})
	k.Close()
	// The broker ends the subscription when the stream closes; wait for it,
	// or the redriven message would go to the closing consumer.
	waitMembersGone(t, c, topic, "g")
	if n, err := c.RedriveDeadLetters(ctx, topic, "g", client.DeadLetters{Key: "k1"}); err != nil || n != 1 {
		t.Fatalf("redrive by key = %d, %v; want 1", n, err)
	}
	if n, err := c.PurgeDeadLetters(ctx, topic, "g", client.DeadLetters{IDs: []string{"2"}}); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v; want 1", n, err)
	}
	s.Stop(t)

	s = dmqtest.Start(t, dir, nil)
	c = dmqtest.Dial(t, s.GRPCAddr())
	g, err := c.GetGroup(ctx, topic, "g")
	if err != nil || g.Stats.DeadLetters != 2 {
		t.Fatalf("after restart: %v dead letters (%v), want 2", g.GetStats().GetDeadLetters(), err)
	}
	got := make(chan *client.Message, 5)
	subscribe(t, c, topic, "g", "c2", func(_ context.Context, m *client.Message) error { got <- m; return nil })
	select {
	case m := <-got:
		if m.Key != "k1" || m.Attempt != 1 {
			t.Fatalf("after restart got %s (key %s attempt %d), want the redriven k1 with attempt 1", m.ID, m.Key, m.Attempt)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("redriven message not delivered after restart")
	}
	dmqtest.Eventually(t, 10*time.Second, "redriven message acked", func() bool {
		g, err := c.GetGroup(ctx, topic, "g")
		return err == nil && g.Stats.DeadLetters == 1
	})
}

// A group reset to a time delivers again exactly the messages published
// after it; to earliest, all; to latest, none.
func TestGroupResetReplaysFromTime(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.reliable.replay"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	publishN(t, c, topic, 5) // m0..m4
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	p := c.NewProducer(topic)
	for i := 5; i < 10; i++ {
		if _, err := p.Publish(ctx, &client.Message{Body: []byte(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	rec := newRecorder()
	k := subscribe(t, c, topic, "g", "c1", rec.handler("c1"))
	waitAcked(t, c, topic, "g", 10)
	k.Close()
	waitMembersGone(t, c, topic, "g")

	replay := func(to client.ResetTo, want []string) {
		t.Helper()
		if _, err := c.ResetGroup(ctx, topic, "g", to); err != nil {
			t.Fatalf("ResetGroup(%+v): %v", to, err)
		}
		r := newRecorder()
		k := subscribe(t, c, topic, "g", "c1", r.handler("c1"))
		waitAcked(t, c, topic, "g", 10)
		k.Close()
		waitMembersGone(t, c, topic, "g")
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.total != len(want) {
			t.Errorf("reset to %+v delivered %d messages, want %d", to, r.total, len(want))
		}
		for _, b := range want {
			if r.byBody[b] != 1 {
				t.Errorf("reset to %+v: %s delivered %d times, want once", to, b, r.byBody[b])
			}
		}
	}
	replay(client.ResetTo{Time: mark}, []string{"m5", "m6", "m7", "m8", "m9"})
	replay(client.ResetTo{Earliest: true}, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"})
	replay(client.ResetTo{Latest: true}, nil)
	if _, err := c.ResetGroup(ctx, topic, "g", client.ResetTo{}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("reset without a target: %v, want InvalidArgument", err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "bad", RetryBackoff: []time.Duration{-time.Second}}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("negative retry schedule: %v, want InvalidArgument", err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "bad", MaxAttempts: 1_000_000}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("absurd max attempts: %v, want InvalidArgument", err)
	}
}

// waitMembersGone waits until no consumer is attached to the group.
func waitMembersGone(t *testing.T, c *client.Client, topic, group string) {
	t.Helper()
	dmqtest.Eventually(t, 10*time.Second, "the consumers to leave "+group, func() bool {
		g, err := c.GetGroup(context.Background(), topic, group)
		return err == nil && g.Stats.MembersOnline == 0
	})
}
