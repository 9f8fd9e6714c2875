// Package e2e holds end-to-end tests: a real server on loopback, driven by
// the real SDK over gRPC.
package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// recorder counts deliveries per consumer and per message body.
type recorder struct {
	mu     sync.Mutex
	byBody map[string]int
	byCons map[string]int
	total  int
}

func newRecorder() *recorder {
	return &recorder{byBody: map[string]int{}, byCons: map[string]int{}}
}

func (r *recorder) handler(consumer string) client.Handler {
	return func(_ context.Context, m *client.Message) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.byBody[string(m.Body)]++
		r.byCons[consumer]++
		r.total++
		return nil
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

func setupTopic(t *testing.T, c *client.Client, topic string, groups ...client.GroupSpec) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic}); err != nil {
		t.Fatalf("CreateTopic(%s): %v", topic, err)
	}
	for _, g := range groups {
		g.Topic = topic
		if _, err := c.CreateGroup(ctx, g); err != nil {
			t.Fatalf("CreateGroup(%s): %v", g.Name, err)
		}
	}
}

func publishN(t *testing.T, c *client.Client, topic string, n int) []string {
	t.Helper()
	p := c.NewProducer(topic)
	defer p.Close()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		i := i
		err := p.PublishAsync(context.Background(), &client.Message{Key: fmt.Sprint("k", i), Body: []byte(fmt.Sprint("m", i))}, func(r client.PublishResult, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("publish m%d: %v", i, err)
			}
			ids[i] = r.ID
		})
		if err != nil {
			t.Fatalf("PublishAsync: %v", err)
		}
	}
	wg.Wait()
	return ids
}

func subscribe(t *testing.T, c *client.Client, topic, group, clientID string, h client.Handler, opts ...client.ConsumerOption) *client.Consumer {
	t.Helper()
	opts = append(opts, client.ConsumerClientID(clientID))
	k, err := c.Subscribe(context.Background(), topic, group, h, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%s/%s as %s): %v", topic, group, clientID, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// Cluster members together get every message once, and the load spreads.
func TestClusterMembersShareEveryMessageOnce(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	setupTopic(t, c, "test.e2e.cluster", client.GroupSpec{Name: "workers"})
	rec := newRecorder()
	for i := 0; i < 3; i++ {
		subscribe(t, c, "test.e2e.cluster", "workers", fmt.Sprint("w", i), rec.handler(fmt.Sprint("w", i)), client.Prefetch(8))
	}
	const n = 3000
	publishN(t, c, "test.e2e.cluster", n)
	dmqtest.Eventually(t, 20*time.Second, "all messages consumed", func() bool { return rec.count() >= n })
	// Give a duplicate time to show up, then check exactly-once.
	g := waitAcked(t, c, "test.e2e.cluster", "workers", n)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.byBody) != n || rec.total != n {
		t.Fatalf("got %d distinct messages in %d deliveries, want %d once each", len(rec.byBody), rec.total, n)
	}
	for cons, k := range rec.byCons {
		if k == 0 || k == n {
			t.Errorf("consumer %s got %d of %d messages: load did not spread", cons, k, n)
		}
	}
	if len(rec.byCons) != 3 {
		t.Errorf("%d consumers got messages, want 3", len(rec.byCons))
	}
	if g.Stats.Backlog != 0 {
		t.Errorf("backlog after consuming all = %d, want 0", g.Stats.Backlog)
	}
}

// waitAcked waits until every one of n messages is acked by the group.
func waitAcked(t *testing.T, c *client.Client, topic, group string, n uint64) *dmqv1.Group {
	t.Helper()
	var g *dmqv1.Group
	dmqtest.Eventually(t, 20*time.Second, fmt.Sprintf("group %s to ack %d messages", group, n), func() bool {
		var err error
		g, err = c.GetGroup(context.Background(), topic, group)
		if err != nil {
			t.Fatalf("GetGroup: %v", err)
		}
		return g.Stats.AckFloor >= n && g.Stats.InFlight == 0
	})
	return g
}

// Every broadcast member gets every message.
func TestBroadcastMembersEachGetEveryMessage(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	setupTopic(t, c, "test.e2e.broadcast", client.GroupSpec{Name: "all", Mode: client.Broadcast})
	recs := make([]*recorder, 3)
	for i := range recs {
		recs[i] = newRecorder()
		subscribe(t, c, "test.e2e.broadcast", "all", fmt.Sprint("member-", i), recs[i].handler("x"))
	}
	const n = 500
	publishN(t, c, "test.e2e.broadcast", n)
	for i, r := range recs {
		dmqtest.Eventually(t, 20*time.Second, fmt.Sprintf("member %d to get all", i), func() bool { return r.count() >= n })
	}
	waitAcked(t, c, "test.e2e.broadcast", "all", n)
	for i, r := range recs {
		r.mu.Lock()
		if len(r.byBody) != n || r.total != n {
			t.Errorf("member %d: %d distinct in %d deliveries, want %d once each", i, len(r.byBody), r.total, n)
		}
		r.mu.Unlock()
	}
}

// Two groups of one topic each get every message.
func TestEveryGroupGetsEveryMessage(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	setupTopic(t, c, "test.e2e.groups", client.GroupSpec{Name: "billing"}, client.GroupSpec{Name: "mailer", AckMode: client.AutoAck})
	a, b := newRecorder(), newRecorder()
	subscribe(t, c, "test.e2e.groups", "billing", "b1", a.handler("b1"))
	subscribe(t, c, "test.e2e.groups", "mailer", "m1", b.handler("m1"))
	const n = 1000
	publishN(t, c, "test.e2e.groups", n)
	waitAcked(t, c, "test.e2e.groups", "billing", n)
	// Auto ack counts a message acked once sent: wait for the handler too.
	waitAcked(t, c, "test.e2e.groups", "mailer", n)
	dmqtest.Eventually(t, 10*time.Second, "mailer handled all", func() bool { return b.count() >= n })
	for name, r := range map[string]*recorder{"billing": a, "mailer": b} {
		r.mu.Lock()
		if len(r.byBody) != n {
			t.Errorf("group %s got %d distinct messages, want %d", name, len(r.byBody), n)
		}
		r.mu.Unlock()
	}
}

// A member that stops acking has its messages redelivered to another member
// once the ack timeout passes.
func TestUnackedMessageRedeliveredToAnotherMemberAfterAckTimeout(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	setupTopic(t, c, "test.e2e.redeliver", client.GroupSpec{Name: "g", AckTimeout: 500 * time.Millisecond})

	// The stuck consumer takes the message and never returns from its handler.
	got := make(chan *client.Message, 10)
	release := make(chan struct{})
	defer close(release)
	subscribe(t, c, "test.e2e.redeliver", "g", "stuck", func(ctx context.Context, m *client.Message) error {
		got <- m
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, client.Prefetch(1))
	rs, err := c.Publish(context.Background(), "test.e2e.redeliver", &client.Message{Key: "order-1", Body: []byte("pay")})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{rs[0].ID}
	var first *client.Message
	select {
	case first = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("stuck consumer got nothing")
	}
	if first.ID != ids[0] || first.Attempt != 1 {
		t.Fatalf("first delivery = id %s attempt %d, want id %s attempt 1", first.ID, first.Attempt, ids[0])
	}

	healthy := make(chan *client.Message, 10)
	subscribe(t, c, "test.e2e.redeliver", "g", "healthy", func(_ context.Context, m *client.Message) error {
		healthy <- m
		return nil
	})
	select {
	case m := <-healthy:
		if m.ID != ids[0] || m.Attempt != 2 || m.Key != "order-1" || string(m.Body) != "pay" {
			t.Fatalf("redelivery = %+v, want id %s attempt 2 key order-1 body pay", m, ids[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not redelivered to the healthy member after the ack timeout")
	}
	waitAcked(t, c, "test.e2e.redeliver", "g", 1)
}

// A handler that fails three times then succeeds sees the message four
// times, each failure followed by the group's backoff, with the attempt
// number and the last failure reason.
func TestFailingHandlerRetriedOnTheGroupSchedule(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	schedule := []time.Duration{100 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	setupTopic(t, c, "test.e2e.retry", client.GroupSpec{Name: "g", RetryBackoff: schedule})
	type seen struct {
		at      time.Time
		attempt int
		last    string
	}
	seenCh := make(chan seen, 10)
	subscribe(t, c, "test.e2e.retry", "g", "c1", func(_ context.Context, m *client.Message) error {
		seenCh <- seen{time.Now(), m.Attempt, m.LastFailure}
		switch m.Attempt {
		case 1:
			return fmt.Errorf("database down")
		case 2:
			panic("nil map")
		case 3:
			return fmt.Errorf("still down")
		}
		return nil
	})
	if _, err := c.Publish(context.Background(), "test.e2e.retry", &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var got []seen
	for len(got) < 4 {
		select {
		case s := <-seenCh:
			got = append(got, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d deliveries: %+v", len(got), got)
		}
	}
	wantLast := []string{"", "database down", "handler panicked: nil map", "still down"}
	for i, s := range got {
		if s.attempt != i+1 || s.last != wantLast[i] {
			t.Errorf("delivery %d: attempt %d last failure %q, want %d and %q", i+1, s.attempt, s.last, i+1, wantLast[i])
		}
		if i == 0 {
			continue
		}
		gap, want := s.at.Sub(got[i-1].at), schedule[i-1]
		if gap < want || gap > want+time.Second {
			t.Errorf("gap before delivery %d = %s, want the schedule's %s (up to 1s late)", i+1, gap, want)
		}
	}
	waitAcked(t, c, "test.e2e.retry", "g", 1)
	select {
	case s := <-seenCh:
		t.Fatalf("delivered again after the ack: %+v", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// Close drains gracefully: a handler running when Close is called finishes
// with a live context, and its message is acked.
func TestConsumerCloseLetsRunningHandlerFinishAndAcks(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	const topic = "test.e2e.drain"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	started := make(chan struct{})
	var ctxErr error
	k, err := c.Subscribe(context.Background(), topic, "g", func(ctx context.Context, m *client.Message) error {
		close(started)
		time.Sleep(300 * time.Millisecond) // work in progress while Close is called
		ctxErr = ctx.Err()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), topic, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ctxErr != nil {
		t.Errorf("handler's context was %v during the drain, want live", ctxErr)
	}
	g := waitAcked(t, c, topic, "g", 1)
	if g.Stats.InFlight != 0 {
		t.Errorf("in flight after drain = %d", g.Stats.InFlight)
	}
}
