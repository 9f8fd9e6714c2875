package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// delayRecorder checks deliveries of messages whose body is their due time
// in Unix milliseconds: none early, each once per group.
type delayRecorder struct {
	mu       sync.Mutex
	seen     map[string]int // body → deliveries
	early    []string
	lateness []time.Duration
}

func (r *delayRecorder) handler(_ context.Context, m *client.Message) error {
	now := time.Now()
	due, err := strconv.ParseInt(string(m.Body[:13]), 10, 64)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[string(m.Body)]++
	late := now.Sub(time.UnixMilli(due))
	if late < 0 {
		r.early = append(r.early, fmt.Sprintf("%s %s early", m.Body, -late))
	}
	r.lateness = append(r.lateness, late)
	return nil
}

func (r *delayRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// 10,000 messages with random delays up to 5 s reach every group, none
// early; a cancelled one never arrives.
func TestDelayedMessagesOnTimeToEveryGroup(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.delay.orders"
	setupTopic(t, c, topic, client.GroupSpec{Name: "billing"}, client.GroupSpec{Name: "audit", Mode: client.Broadcast})
	recs := []*delayRecorder{{}, {}}
	subscribe(t, c, topic, "billing", "b1", recs[0].handler, client.Concurrency(4))
	subscribe(t, c, topic, "audit", "a1", recs[1].handler, client.Concurrency(4))

	const n = 10_000
	p := c.NewProducer(topic)
	var wg sync.WaitGroup
	var cancelID string
	for i := 0; i < n; i++ {
		due := time.Now().Add(time.Duration(rand.IntN(5000)) * time.Millisecond)
		body := fmt.Sprintf("%013d-%d", due.UnixMilli(), i)
		wg.Add(1)
		if err := p.PublishAsync(ctx, (&client.Message{Key: fmt.Sprint(i), Body: []byte(body)}).WithDeliverAt(due), func(r client.PublishResult, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("publish: %v", err)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	// One more, far enough out to cancel it before it is due.
	rs, err := c.Publish(ctx, topic, (&client.Message{Key: "cancel-me", Body: []byte(fmt.Sprintf("%013d-x", time.Now().Add(2*time.Second).UnixMilli()))}).WithDelay(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cancelID = rs[0].ID
	wg.Wait()
	p.Close()
	page, err := c.ListDelayed(ctx, topic, client.DelayedFilter{Key: "cancel-me"})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Id != cancelID {
		t.Fatalf("ListDelayed by key = %+v, %v", page, err)
	}
	if err := c.CancelDelayed(ctx, topic, cancelID); err != nil {
		t.Fatalf("CancelDelayed: %v", err)
	}
	if err := c.CancelDelayed(ctx, topic, cancelID); client.Code(err) != codes.NotFound {
		t.Fatalf("second cancel: %v, want NotFound", err)
	}
	for i, r := range recs {
		dmqtest.Eventually(t, 30*time.Second, fmt.Sprintf("group %d to get all %d", i, n), func() bool { return r.count() >= n })
	}
	// Nothing is pending any more and the log holds exactly the n
	// messages: the cancelled one can never arrive.
	waitAcked(t, c, topic, "billing", n)
	waitAcked(t, c, topic, "audit", n)
	// The pending count drops once the delay store forgot the delivered
	// batch, a moment after its messages reached the log.
	dmqtest.Eventually(t, 5*time.Second, "no delayed message pending", func() bool {
		tp, err := c.GetTopic(ctx, topic)
		return err == nil && tp.Stats.DelayedPending == 0
	})
	if tp, err := c.GetTopic(ctx, topic); err != nil || tp.Stats.DelayedPending != 0 || tp.Stats.NextOffset != n {
		t.Fatalf("after delivery: pending %d, stored %d (%v); want 0 pending and exactly %d stored",
			tp.GetStats().GetDelayedPending(), tp.GetStats().GetNextOffset(), err, n)
	}
	for i, r := range recs {
		r.mu.Lock()
		if len(r.early) > 0 {
			t.Errorf("group %d: %d messages early, e.g. %v", i, len(r.early), r.early[:min(3, len(r.early))])
		}
		if len(r.seen) != n {
			t.Errorf("group %d got %d distinct messages, want %d (the cancelled one must not arrive)", i, len(r.seen), n)
		}
		slices.Sort(r.lateness)
		t.Logf("group %d lateness p50 %s p99 %s max %s", i, r.lateness[len(r.lateness)/2], r.lateness[len(r.lateness)*99/100], r.lateness[len(r.lateness)-1])
		r.mu.Unlock()
	}
}

// Delayed messages survive SIGKILL; those that fell due while the broker
// was down arrive promptly after it starts.
func TestDelayedMessagesSurviveKillAndArriveAfterDowntime(t *testing.T) {
	const topic = "test.delay.kill"
	dir := t.TempDir()
	p := dmqtest.StartProcess(t, dir)
	c, err := client.Dial(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	start := time.Now()
	const n = 200
	for i := 0; i < n; i++ {
		// Half fall due during the downtime, half after the restart.
		due := start.Add(500*time.Millisecond + time.Duration(i)*15*time.Millisecond)
		if _, err := c.Publish(context.Background(), topic, (&client.Message{Body: []byte(fmt.Sprintf("%013d-%d", due.UnixMilli(), i))}).WithDeliverAt(due)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	p.Kill()
	time.Sleep(time.Until(start.Add(2 * time.Second))) // let some fall due while down

	p = dmqtest.StartProcess(t, dir)
	restarted := time.Now()
	c = dmqtest.Dial(t, p.Addr)
	rec := &delayRecorder{}
	subscribe(t, c, topic, "g", "c", rec.handler)
	dmqtest.Eventually(t, 20*time.Second, "all delayed messages after the restart", func() bool { return rec.count() >= n })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.early) > 0 {
		t.Errorf("%d early: %v", len(rec.early), rec.early[:min(3, len(rec.early))])
	}
	if len(rec.seen) != n {
		t.Errorf("%d distinct delivered, want %d", len(rec.seen), n)
	}
	t.Logf("restart to all delivered: %s", time.Since(restarted))
	p.Stop(t)
}

func TestDelayBadInput(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	setupTopic(t, c, "test.delay.a")
	setupTopic(t, c, "test.delay.b")
	if _, err := c.Publish(ctx, "test.delay.a", (&client.Message{Body: []byte("x")}).WithDelay(100*24*time.Hour)); client.Code(err) != codes.InvalidArgument {
		t.Errorf("delay beyond the maximum: %v, want InvalidArgument", err)
	}
	rs, err := c.Publish(ctx, "test.delay.a", (&client.Message{Body: []byte("x")}).WithDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CancelDelayed(ctx, "test.delay.b", rs[0].ID); client.Code(err) != codes.NotFound {
		t.Errorf("cancel of another topic's id: %v, want NotFound", err)
	}
	if err := c.CancelDelayed(ctx, "test.delay.a", "12"); client.Code(err) != codes.InvalidArgument {
		t.Errorf("cancel of a non-delayed id: %v, want InvalidArgument", err)
	}
	// A deliver-at in the past means now: an ordinary message id.
	past, err := c.Publish(ctx, "test.delay.a", (&client.Message{Body: []byte("y")}).WithDeliverAt(time.Now().Add(-time.Hour)))
	if err != nil || past[0].ID != "0" {
		t.Errorf("deliver-at in the past = %+v, %v; want stored now as id 0", past, err)
	}
	tp, _ := c.GetTopic(ctx, "test.delay.a")
	if tp.Stats.DelayedPending != 1 || tp.Stats.NextDelayedDueMs == 0 {
		t.Errorf("stats = %+v, want 1 pending with a next due time", tp.Stats)
	}
	// The same count on /metrics, next to the stored messages.
	resp, err := http.Get("http://" + s.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A cluster node (dmqtest.OneVoter) labels its brokers' series with their shard too.
	for _, want := range []string{`dmq_topic_delayed_pending\{(shard="s0",)?topic="test\.delay\.a"\} 1\n`, `dmq_topic_stored_messages\{(shard="s0",)?topic="test\.delay\.a"\} 1\n`} {
		if !regexp.MustCompile(want).Match(body) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
