package client_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// These tests drive the SDK against a real single-node broker (the leader) and fake
// followers: gRPC servers that answer every call, unary or streaming, as a cluster
// follower does.

// follower answers every call with Unavailable and a NOT_LEADER ErrorInfo naming its
// leader's address ("" while an election is in progress).
type follower struct {
	addr string
	mu   struct {
		sync.Mutex
		leader string
		calls  map[string]int // by full method name
		// electAfter, when positive, makes electTo the leader once that many calls came.
		electAfter int
		electTo    string
		// heartbeatDelay holds heartbeats back: they start as soon as a client
		// publishes or subscribes, and answered late they do not redirect the
		// client before the call under test does.
		heartbeatDelay time.Duration
	}
}

func startFollower(t *testing.T, leader string) *follower {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &follower{addr: lis.Addr().String()}
	f.mu.leader = leader
	f.mu.calls = map[string]int{}
	f.mu.heartbeatDelay = 500 * time.Millisecond
	s := grpc.NewServer(grpc.UnknownServiceHandler(f.refuse))
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return f
}

func (f *follower) refuse(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	f.mu.Lock()
	delay := f.mu.heartbeatDelay
	f.mu.Unlock()
	if strings.HasSuffix(method, "/Heartbeat") {
		select {
		case <-time.After(delay):
		case <-stream.Context().Done():
		}
	}
	f.mu.Lock()
	f.mu.calls[method]++
	if f.mu.electAfter > 0 && f.total() >= f.mu.electAfter {
		f.mu.leader = f.mu.electTo
	}
	leader := f.mu.leader
	f.mu.Unlock()
	msg := "dmq: node n2 is not the leader; no leader is known yet (an election is in progress)"
	if leader != "" {
		msg = "dmq: node n2 is not the leader; the leader is n1 at " + leader
	}
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{
		Reason: "NOT_LEADER", Domain: "dmq.io",
		Metadata: map[string]string{"leader_id": map[bool]string{true: "n1"}[leader != ""], "leader_addr": leader},
	})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

// total is the number of calls refused; f.mu must be held.
func (f *follower) total() int {
	n := 0
	for _, c := range f.mu.calls {
		n += c
	}
	return n
}

// calls returns how many calls of method (all, for "") the follower refused.
func (f *follower) calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if method == "" {
		return f.total()
	}
	return f.mu.calls["/dmq.v1.Broker/"+method]
}

// electAfter makes leader the leader the follower names once it refused n calls.
func (f *follower) electAfter(n int, leader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.electAfter, f.mu.electTo = n, leader
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func dial(t *testing.T, seeds string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(seeds, opts...)
	if err != nil {
		t.Fatalf("Dial(%q): %v", seeds, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestClientFollowsTheLeader dials seed lists whose first node does not serve (a
// follower, a dead address, a follower naming a dead leader) and checks that every kind
// of call lands on the leader: unary Publish, the Producer's stream, Subscribe and
// consume, admin calls, raw API calls, and heartbeats. Each path starts on a fresh
// client, so that it has to find the leader by itself.
func TestClientFollowsTheLeader(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	leader := broker.GRPCAddr()
	admin := dmqtest.Dial(t, leader)
	fol := startFollower(t, leader)
	dead := deadAddr(t)
	misled := startFollower(t, dead) // names a leader that is gone

	for i, tc := range []struct {
		name  string
		seeds string
		via   *follower // the follower that must have seen each call first, if any
	}{
		{"follower only", fol.addr, fol},
		{"follower first", fol.addr + "," + leader, fol},
		{"dead first", dead + "," + leader, nil},
		{"follower naming a dead leader", misled.addr + "," + leader, misled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("test.leader.follow%d", i)
			ctx := ctxFor(t, 30*time.Second)
			if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: topic}); err != nil {
				t.Fatalf("CreateTopic(%s) on the leader: %v", topic, err)
			}
			if _, err := admin.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "g", FromEarliest: true}); err != nil {
				t.Fatalf("CreateGroup(g) on the leader: %v", err)
			}
			// fresh dials a new client; check verifies it ended on the leader having
			// sent method to the follower first.
			fresh := func(t *testing.T, id string) *client.Client {
				return dial(t, tc.seeds, client.WithClientID(fmt.Sprintf("%s%d", id, i)))
			}
			check := func(t *testing.T, c *client.Client, method string, before int) {
				t.Helper()
				if got := client.CurrentAddr(c); got != leader {
					t.Errorf("client sends to %s, want the leader %s (known %v)", got, leader, client.KnownAddrs(c))
				}
				if tc.via != nil && tc.via.calls(method) <= before {
					t.Errorf("the follower refused no %s call: the test did not exercise the redirect", method)
				}
			}

			t.Run("publish", func(t *testing.T) {
				c := fresh(t, "pub")
				before := callsOf(tc.via, "Publish")
				rs, err := c.Publish(ctx, topic, &client.Message{Body: []byte("unary")})
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
				if rs[0].Duplicate {
					t.Errorf("Publish result %+v is a duplicate", rs[0])
				}
				check(t, c, "Publish", before)
			})
			t.Run("producer", func(t *testing.T) {
				c := fresh(t, "prod")
				before := callsOf(tc.via, "PublishStream")
				p := c.NewProducer(topic)
				for j := range 3 {
					r, err := p.Publish(ctx, &client.Message{Body: fmt.Appendf(nil, "stream-%d", j)})
					if err != nil {
						t.Fatalf("Producer.Publish #%d: %v", j, err)
					}
					if r.Duplicate {
						t.Errorf("Producer.Publish #%d: result %+v is a duplicate", j, r)
					}
				}
				if err := p.Close(); err != nil {
					t.Fatalf("Producer.Close: %v", err)
				}
				check(t, c, "PublishStream", before)
			})
			t.Run("subscribe", func(t *testing.T) {
				c := fresh(t, "sub")
				before := callsOf(tc.via, "Subscribe")
				// Subscribe returns the leader's own answer: the topic does not exist.
				if _, err := c.Subscribe(ctx, "test.leader.none", "g", func(context.Context, *client.Message) error { return nil }); client.Code(err) != codes.NotFound {
					t.Fatalf("Subscribe to a missing topic: %v, want NotFound from the leader", err)
				}
				check(t, c, "Subscribe", before)

				got := make(chan string, 16)
				k, err := c.Subscribe(ctx, topic, "g", func(_ context.Context, m *client.Message) error {
					got <- string(m.Body)
					return nil
				})
				if err != nil {
					t.Fatalf("Subscribe(%s, g): %v", topic, err)
				}
				want := []string{"stream-0", "stream-1", "stream-2", "unary"}
				var bodies []string
				for len(bodies) < len(want) {
					select {
					case b := <-got:
						bodies = append(bodies, b)
					case <-ctx.Done():
						t.Fatalf("consumed %v, want %v", bodies, want)
					}
				}
				// The consumer's heartbeats reached the leader's client registry.
				id := fmt.Sprintf("sub%d", i)
				dmqtest.Eventually(t, 10*time.Second, "the leader to list client "+id, func() bool {
					cs, err := admin.ListClients(ctx, client.ClientFilter{Topic: topic})
					return err == nil && slices.ContainsFunc(cs, func(ci *dmqv1.ClientInfo) bool { return ci.ClientId == id })
				})
				if err := k.Close(); err != nil {
					t.Fatalf("Consumer.Close: %v", err)
				}
				slices.Sort(bodies)
				if !slices.Equal(bodies, want) {
					t.Fatalf("consumed %v, want %v", bodies, want)
				}
				// Stored once each: no publish was stored twice on the way.
				tp, err := admin.GetTopic(ctx, topic)
				if err != nil {
					t.Fatalf("GetTopic: %v", err)
				}
				if n := tp.Stats.NextOffset - tp.Stats.FirstOffset; n != uint64(len(want)) {
					t.Fatalf("topic stores %d messages, want %d", n, len(want))
				}
			})
			t.Run("admin", func(t *testing.T) {
				c := fresh(t, "admin")
				before := callsOf(tc.via, "CreateGroup")
				if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "g2"}); err != nil {
					t.Fatalf("CreateGroup(g2): %v", err)
				}
				if _, err := admin.GetGroup(ctx, topic, "g2"); err != nil {
					t.Fatalf("GetGroup(g2) on the leader: %v", err)
				}
				check(t, c, "CreateGroup", before)
			})
			t.Run("api", func(t *testing.T) {
				c := fresh(t, "api")
				before := callsOf(tc.via, "ServerInfo")
				if _, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{}); err != nil {
					t.Fatalf("API().ServerInfo: %v", err)
				}
				check(t, c, "ServerInfo", before)
			})
		})
	}
	if misled.calls("") == 0 {
		t.Fatal("the follower naming a dead leader was never asked")
	}
}

// callsOf is f.calls(method), 0 without a follower.
func callsOf(f *follower, method string) int {
	if f == nil {
		return 0
	}
	return f.calls(method)
}

// TestLeaderHintToADeadAddressRotates: the named leader is not a seed and is down; the
// client learns it, fails to reach it, and moves on to the next seed rather than back to
// the node that named it.
func TestLeaderHintToADeadAddressRotates(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	leader := broker.GRPCAddr()
	dead := deadAddr(t)
	fol := startFollower(t, dead)
	c := dial(t, fol.addr+","+leader)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.leader.rotate"}); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if got := client.CurrentAddr(c); got != leader {
		t.Fatalf("client sends to %s, want %s", got, leader)
	}
	if known := client.KnownAddrs(c); !slices.Equal(known, []string{fol.addr, leader, dead}) {
		t.Fatalf("known addresses %v, want the seeds then the learned %s", known, dead)
	}
	if n := fol.calls("CreateTopic"); n != 1 {
		t.Fatalf("the follower saw %d CreateTopic calls, want 1 (then rotation to the next seed)", n)
	}
}

// TestRedirectLoopIsBounded: two followers name each other. Each send follows at most
// MaxRedirects redirects, then waits a backoff; after the RetryPolicy's attempts the call
// fails with the last NOT_LEADER answer.
func TestRedirectLoopIsBounded(t *testing.T) {
	a := startFollower(t, "")
	b := startFollower(t, a.addr)
	a.mu.Lock()
	a.mu.leader = b.addr
	a.mu.Unlock()
	for _, f := range []*follower{a, b} {
		f.mu.Lock()
		f.mu.heartbeatDelay = 0 // the client never leaves them: no call to get ahead of
		f.mu.Unlock()
	}
	const attempts = 3
	retry := client.RetryPolicy{Attempts: attempts, Backoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	c := dial(t, a.addr, client.WithRetry(retry))
	perCall := attempts * (client.MaxRedirects + 1)

	for _, tc := range []struct {
		name   string
		method string
		call   func(ctx context.Context) error
	}{
		{"publish", "Publish", func(ctx context.Context) error {
			_, err := c.Publish(ctx, "test.leader.loop", &client.Message{Body: []byte("x")})
			return err
		}},
		{"admin", "CreateTopic", func(ctx context.Context) error {
			_, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.leader.loop"})
			return err
		}},
		{"api", "ServerInfo", func(ctx context.Context) error {
			_, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(ctxFor(t, 20*time.Second))
			if client.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not the leader") {
				t.Fatalf("call through two followers naming each other: %v, want Unavailable (not the leader)", err)
			}
			if n := a.calls(tc.method) + b.calls(tc.method); n != perCall {
				t.Fatalf("the followers saw %d %s calls, want %d (%d attempts x (1 + %d redirects))", n, tc.method, perCall, attempts, client.MaxRedirects)
			}
		})
	}
	t.Run("producer", func(t *testing.T) {
		p := c.NewProducer("test.leader.loop", client.ProducerRetry(retry))
		defer p.Close()
		_, err := p.Publish(ctxFor(t, 20*time.Second), &client.Message{Body: []byte("x")})
		if client.Code(err) != codes.Unavailable {
			t.Fatalf("Producer.Publish through two followers naming each other: %v, want Unavailable", err)
		}
		if n := a.calls("PublishStream") + b.calls("PublishStream"); n == 0 || n > perCall {
			t.Fatalf("the followers saw %d streams, want 1 to %d", n, perCall)
		}
	})
}

// TestElectionInProgressWaitsForALeader: while the only seed knows no leader, calls are
// refused (nothing done) and sent again after the backoff, mutations included, until it
// names one.
func TestElectionInProgressWaitsForALeader(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	leader := broker.GRPCAddr()
	retry := client.WithRetry(client.RetryPolicy{Attempts: 50, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	ctx := ctxFor(t, 30*time.Second)
	const refusals = 4

	fol := startFollower(t, "")
	fol.electAfter(refusals, leader)
	c := dial(t, fol.addr, retry)
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.leader.elect"}); err != nil {
		t.Fatalf("CreateTopic during an election: %v", err)
	}
	if n := fol.calls("CreateTopic"); n != refusals {
		t.Fatalf("the follower saw %d CreateTopic calls, want %d", n, refusals)
	}

	// A consumer started during the election attaches once there is a leader.
	fol2 := startFollower(t, "")
	fol2.electAfter(refusals, leader)
	c2 := dial(t, fol2.addr, retry)
	got := make(chan string, 1)
	if _, err := dmqtest.Dial(t, leader).CreateGroup(ctx, client.GroupSpec{Topic: "test.leader.elect", Name: "g"}); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	k, err := c2.Subscribe(ctx, "test.leader.elect", "g", func(_ context.Context, m *client.Message) error {
		select {
		case got <- string(m.Body):
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Subscribe during an election: %v", err)
	}
	defer k.Close()
	dmqtest.Eventually(t, 10*time.Second, "the consumer to reach the leader", func() bool { return client.CurrentAddr(c2) == leader })
	// The consumer may still be attaching: publish until it delivers.
	dmqtest.Eventually(t, 10*time.Second, "a delivery", func() bool {
		if _, err := c.Publish(ctx, "test.leader.elect", &client.Message{Body: []byte("elected")}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		select {
		case b := <-got:
			return b == "elected"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
}

// TestSingleDeadBrokerFailsAdminCallsAtOnce keeps the single-broker behaviour: a call
// that cannot be sent to the only address is not retried (publishes are, per the
// RetryPolicy).
func TestSingleDeadBrokerFailsAdminCallsAtOnce(t *testing.T) {
	c := dial(t, deadAddr(t))
	start := time.Now()
	_, err := c.ListTopics(ctxFor(t, 30*time.Second), client.TopicFilter{})
	if client.Code(err) != codes.Unavailable {
		t.Fatalf("ListTopics on a dead broker: %v, want Unavailable", err)
	}
	// DefaultRetry would take about 30 s; one failed connection takes milliseconds.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ListTopics on a dead broker took %v: it was retried", d)
	}
}

// TestCloseClosesEveryConnection: a client that used two addresses closes both, and
// calls after Close fail with Canceled.
func TestCloseClosesEveryConnection(t *testing.T) {
	broker := dmqtest.Start(t, "", nil)
	leader := broker.GRPCAddr()
	fol := startFollower(t, leader)
	c, err := client.Dial(fol.addr + "," + leader)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.ListTopics(ctx, client.TopicFilter{}); err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if states := client.ConnStates(c); len(states) != 2 {
		t.Fatalf("connections %v, want one to the follower and one to the leader", states)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for addr, st := range client.ConnStates(c) {
		if st != connectivity.Shutdown {
			t.Errorf("connection to %s is %v after Close, want SHUTDOWN", addr, st)
		}
	}
	if _, err := c.ListTopics(ctx, client.TopicFilter{}); client.Code(err) != codes.Canceled {
		t.Fatalf("ListTopics after Close: %v, want Canceled", err)
	}
}
