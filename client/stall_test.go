package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// These tests stop a node the way SIGSTOP does, as the client sees it: its connections
// stay open and nothing answers. Issue 20: producers and consumers waited for the
// stopped leader's return while the others had elected a new one.

// stallProxy forwards TCP connections to a broker until it stalls: from then on it
// answers nothing on the connections it holds or accepts, without closing them, and
// drops its connections to the broker (the broker sees the client leave, as a stopped
// leader's shards are led by another node).
type stallProxy struct {
	addr     string
	upstream string
	lis      net.Listener
	done     chan struct{} // closed at the end of the test
	mu       struct {
		sync.Mutex
		stalled bool
		conns   []net.Conn // every connection, both sides
		ups     []net.Conn // the broker side
	}
}

func startStallProxy(t *testing.T, upstream string) *stallProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &stallProxy{addr: lis.Addr().String(), upstream: upstream, lis: lis, done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(p.done)
		lis.Close()
		p.mu.Lock()
		for _, c := range p.mu.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.mu.conns = append(p.mu.conns, down)
			stalled := p.mu.stalled
			p.mu.Unlock()
			if stalled {
				continue // accepted by the kernel, never answered
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			p.mu.Lock()
			p.mu.conns = append(p.mu.conns, up)
			p.mu.ups = append(p.mu.ups, up)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(up, down) }()
			go func() { defer wg.Done(); p.pipe(down, up) }()
		}
	}()
	return p
}

// stall makes the proxy stop answering for good.
func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.stalled = true
	for _, c := range p.mu.ups {
		c.Close()
	}
}

func (p *stallProxy) stalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.stalled
}

// pipe copies src to dst until either fails, or the proxy stalls: then it copies
// nothing more and closes nothing.
func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if p.stalled() {
			<-p.done
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			if p.stalled() {
				<-p.done
				return
			}
			dst.Close()
			src.Close()
			return
		}
	}
}

// shutdown stops prod, giving up on what it holds after a few seconds: a producer stuck
// on a stalled node fails the test instead of hanging it.
func shutdown(t *testing.T, prod *client.Producer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := prod.Shutdown(ctx); err != nil {
		t.Errorf("Producer.Shutdown: %v", err)
	}
}

// within is how long the tests give the client to notice a stalled node and move on:
// a probe's timeout and interval, and a resend.
const within = client.ProbeTimeout + 3*time.Second

// TestProducerMovesOffAStalledNode publishes through two addresses of one broker; the
// first stalls under the producer's stream. The producer must notice and resend its
// unanswered messages through the second within seconds: each is stored once.
func TestProducerMovesOffAStalledNode(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	admin := dmqtest.Dial(t, broker.GRPCAddr())
	const topic = "dev.stall.producer"
	if _, err := admin.CreateTopic(ctxFor(t, 10*time.Second), client.TopicSpec{Name: topic, Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	first, second := startStallProxy(t, broker.GRPCAddr()), startStallProxy(t, broker.GRPCAddr())
	c := dial(t, first.addr+","+second.addr, client.KeepSeeds()) // two proxies to one node: not its members
	prod := c.NewProducer(topic, client.MaxInFlight(50), client.BatchSize(10))
	defer shutdown(t, prod)

	var mu sync.Mutex
	var lastAck time.Time
	acked := map[string]bool{}
	var failed []error
	publish := func(i int) {
		body := fmt.Sprintf("m-%d", i)
		err := prod.PublishAsync(ctxFor(t, 30*time.Second), &client.Message{Body: []byte(body)}, func(_ client.PublishResult, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
				return
			}
			acked[body] = true
			lastAck = time.Now()
		})
		if err != nil {
			t.Fatalf("PublishAsync: %v", err)
		}
	}
	for i := range 100 {
		publish(i)
	}
	if err := prod.Flush(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := client.CurrentAddr(c); got != first.addr {
		t.Fatalf("the producer publishes through %s, want the first seed %s", got, first.addr)
	}

	first.stall()
	stalledAt := time.Now()
	for i := 100; i < 300; i++ {
		publish(i)
		time.Sleep(5 * time.Millisecond)
	}
	if err := prod.Flush(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("Flush after the stall: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(failed), failed[0])
	}
	if len(acked) != 300 {
		t.Fatalf("%d of 300 publishes acknowledged", len(acked))
	}
	// The last ack came once the messages held by the stalled node were resent.
	t.Logf("every publish acknowledged %v after the stall", lastAck.Sub(stalledAt).Round(time.Millisecond))
	if d := lastAck.Sub(stalledAt); d > within+2*time.Second {
		t.Fatalf("the producer took %v to move off the stalled node, want under %v", d, within+2*time.Second)
	}
	tp, err := admin.GetTopic(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := tp.Stats.NextOffset - tp.Stats.FirstOffset; n != 300 {
		t.Fatalf("the topic stores %d messages for 300 published", n)
	}
}

// TestProducerBudgetCountsAStalledBroker publishes to a single broker that stalls: no
// stream fails by itself, yet the producer's retry budget must run from the moment the
// broker stopped answering, and every message fail with ErrRetriesExhausted once it is
// spent, instead of waiting for the broker forever.
func TestProducerBudgetCountsAStalledBroker(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	admin := dmqtest.Dial(t, broker.GRPCAddr())
	const topic = "dev.stall.budget"
	if _, err := admin.CreateTopic(ctxFor(t, 10*time.Second), client.TopicSpec{Name: topic, Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	proxy := startStallProxy(t, broker.GRPCAddr())
	const budget = 2 * time.Second
	c := dial(t, proxy.addr, client.WithRetry(client.RetryPolicy{Attempts: 1000, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxElapsed: budget}))
	prod := c.NewProducer(topic, client.MaxInFlight(100), client.BatchSize(10))
	defer shutdown(t, prod)
	if _, err := prod.Publish(ctxFor(t, 10*time.Second), &client.Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	proxy.stall()
	stalledAt := time.Now()
	errs := make(chan error, 50)
	for i := range 50 {
		err := prod.PublishAsync(ctxFor(t, 30*time.Second), &client.Message{Body: []byte(fmt.Sprint(i))}, func(_ client.PublishResult, err error) { errs <- err })
		if err != nil {
			t.Fatalf("PublishAsync: %v", err)
		}
	}
	// Noticing the silence (a probe), then what is left of the budget at most: it
	// counts from the stall.
	limit := within + budget
	timeout := time.After(limit + 5*time.Second)
	for range 50 {
		select {
		case err := <-errs:
			if !errors.Is(err, client.ErrRetriesExhausted) || client.Code(err) != codes.Unavailable {
				t.Fatalf("a publish to the stalled broker failed with %v, want Unavailable wrapping ErrRetriesExhausted", err)
			}
		case <-timeout:
			t.Fatalf("publishes to a broker that stalled %v ago are still waiting (budget %v)", time.Since(stalledAt).Round(time.Millisecond), budget)
		}
	}
	if d := time.Since(stalledAt); d > limit {
		t.Fatalf("the producer gave up %v after the stall, want under %v (budget %v)", d, limit, budget)
	} else {
		t.Logf("the producer gave up %v after the stall (budget %v)", d.Round(time.Millisecond), budget)
	}
}

// silentBroker accepts publish streams and reads their batches but never answers, as
// a node whose shard is wedged does; it answers health checks.
type silentBroker struct {
	dmqv1.UnimplementedBrokerServer
	mu      sync.Mutex
	streams int
	ids     map[string]int // client message id -> times received
}

func (b *silentBroker) PublishStream(stream dmqv1.Broker_PublishStreamServer) error {
	b.mu.Lock()
	b.streams++
	b.mu.Unlock()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		b.mu.Lock()
		for _, m := range req.Messages {
			b.ids[m.ClientMessageId]++
		}
		b.mu.Unlock()
	}
}

// TestProducerResendsWhatTheBrokerDoesNotAnswer publishes to a broker that answers its
// probes but not its publishes: the producer counts a stream whose batches get no
// answer for the answer timeout as failed, sends them again with the same ids on a new
// stream, and gives up on them when its budget is spent.
func TestProducerResendsWhatTheBrokerDoesNotAnswer(t *testing.T) {
	const answerTimeout, budget = 300 * time.Millisecond, 2 * time.Second
	client.SetAnswerTimeout(t, answerTimeout)
	b := &silentBroker{ids: map[string]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	dmqv1.RegisterBrokerServer(s, b)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	c := dial(t, lis.Addr().String(), client.WithRetry(client.RetryPolicy{Attempts: 1000, Backoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, MaxElapsed: budget}))
	prod := c.NewProducer("dev.stall.silent")
	defer shutdown(t, prod)
	start := time.Now()
	_, err = prod.Publish(ctxFor(t, 20*time.Second), &client.Message{Body: []byte("x"), ClientMessageID: "only"})
	if !errors.Is(err, client.ErrRetriesExhausted) || client.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Publish to a broker that does not answer: %v, want DeadlineExceeded wrapping ErrRetriesExhausted", err)
	}
	if d := time.Since(start); d > budget+2*answerTimeout+time.Second {
		t.Fatalf("the producer gave up after %v, want about the budget, %v", d, budget)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streams < 2 || b.ids["only"] < 2 {
		t.Fatalf("the message was sent %d times on %d streams, want it sent again on new streams", b.ids["only"], b.streams)
	}
	if len(b.ids) != 1 {
		t.Fatalf("the broker received ids %v, want the message's own only", b.ids)
	}
}

// TestCallsMoveOffAStalledNode sends unary calls and consumes through two addresses of
// one broker; the first stalls. A Publish (sent again with its ids) lands on the second
// within seconds, and the consumer re-attaches there and receives what is published
// after the stall.
func TestCallsMoveOffAStalledNode(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	admin := dmqtest.Dial(t, broker.GRPCAddr())
	const topic, group = "dev.stall.calls", "g"
	ctx := ctxFor(t, 10*time.Second)
	if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: topic, Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group, FromEarliest: true}); err != nil {
		t.Fatal(err)
	}
	first, second := startStallProxy(t, broker.GRPCAddr()), startStallProxy(t, broker.GRPCAddr())
	c := dial(t, first.addr+","+second.addr, client.KeepSeeds()) // two proxies to one node: not its members
	got := make(chan string, 10)
	k, err := c.Subscribe(ctx, topic, group, func(_ context.Context, m *client.Message) error {
		got <- string(m.Body)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := c.Publish(ctx, topic, &client.Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != "before" {
		t.Fatalf("consumed %q, want before", b)
	}

	first.stall()
	stalledAt := time.Now()
	if _, err := c.Publish(ctxFor(t, 30*time.Second), topic, &client.Message{Body: []byte("after")}); err != nil {
		t.Fatalf("Publish after the stall: %v", err)
	}
	if d := time.Since(stalledAt); d > within {
		t.Fatalf("Publish took %v after the stall, want under %v", d, within)
	}
	timeout := time.After(2 * within)
	for b := ""; b != "after"; {
		select {
		case b = <-got: // "before" again, when its ack went to the stalled node
		case <-timeout:
			t.Fatalf("the consumer did not receive what was published %v after the stall", 2*within)
		}
	}
	t.Logf("consumed again %v after the stall", time.Since(stalledAt).Round(time.Millisecond))
	if addr := client.CurrentAddr(c); addr != second.addr {
		t.Fatalf("the client sends calls to %s, want %s", addr, second.addr)
	}
}

// TestElectionIsPolledNotBackedOff keeps a producer and a consumer waiting through an
// election of a few seconds with the default retry policy: a node that answers that no
// leader is known yet is asked again soon, and they reach the leader within a fraction
// of a second of the election's end, not after a resend backoff grown to 2 s (issue 20:
// publishing resumed up to 7.8 s after a leader's SIGKILL under load).
func TestElectionIsPolledNotBackedOff(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	leader := broker.GRPCAddr()
	admin := dmqtest.Dial(t, leader)
	const topic, group = "dev.stall.election", "g"
	ctx := ctxFor(t, 30*time.Second)
	if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: topic, Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group, FromEarliest: true}); err != nil {
		t.Fatal(err)
	}
	// With DefaultRetry, resends go out 0.1, 0.3, 0.7, 1.5, 3.1 and 5.1 s after the
	// first failure: an election over at 3.3 s was followed at 5.1 s (a consumer, backing off from
	// 50 ms, at 5.15 s).
	const election, slack = 3300 * time.Millisecond, 700 * time.Millisecond

	for _, tc := range []struct {
		what string // "the producer published", ...
		do   func(c *client.Client) error
	}{
		{"the producer published", func(c *client.Client) error {
			prod := c.NewProducer(topic)
			defer shutdown(t, prod)
			_, err := prod.Publish(ctx, &client.Message{Body: []byte("x")})
			return err
		}},
		{"Client.Publish returned", func(c *client.Client) error {
			_, err := c.Publish(ctx, topic, &client.Message{Body: []byte("y")})
			return err
		}},
		{"the consumer attached", func(c *client.Client) error {
			got := make(chan struct{}, 10)
			k, err := c.Subscribe(ctx, topic, group, func(context.Context, *client.Message) error {
				got <- struct{}{}
				return nil
			})
			if err != nil {
				return err
			}
			defer k.Close()
			select {
			case <-got:
				return nil
			case <-ctx.Done():
				return errors.New("the consumer received nothing")
			}
		}},
	} {
		fol := startFollower(t, "")
		c := dial(t, fol.addr, client.WithRetry(client.DefaultRetry))
		start := time.Now()
		fol.electIn(election, leader)
		if err := tc.do(c); err != nil {
			t.Fatalf("%s: during the election: %v", tc.what, err)
		}
		if d := time.Since(start); d > election+slack {
			t.Errorf("%s %v after the start of an election of %v, want under %v", tc.what, d.Round(time.Millisecond), election, election+slack)
		} else {
			t.Logf("%s %v after the start of an election of %v", tc.what, d.Round(time.Millisecond), election)
		}
	}
}
