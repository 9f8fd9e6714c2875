package client_test

import (
	"context"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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
		// electAfter, when positive, makes electTo the leader once that many calls came;
		// electAt, when set, once that time has come.
		electAfter int
		electAt    time.Time
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
	if !strings.HasPrefix(method, "/grpc.health.v1.") { // the client's watchdog probes
		f.mu.calls[method]++
	}
	if f.mu.electAfter > 0 && f.total() >= f.mu.electAfter || !f.mu.electAt.IsZero() && !time.Now().Before(f.mu.electAt) {
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

// electIn makes leader the leader the follower names once d has passed.
func (f *follower) electIn(d time.Duration, leader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.electAt, f.mu.electTo = time.Now().Add(d), leader
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
	// The seeds then the learned address; but a cluster node (a one-voter cluster here)
	// also lists the cluster's members, which the client then knows instead: itself.
	want := []string{fol.addr, leader, dead}
	if dmqtest.OneVoter() {
		want = []string{leader}
	}
	if known := client.KnownAddrs(c); !slices.Equal(known, want) {
		t.Fatalf("known addresses %v, want %v", known, want)
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

// shardCluster is a fake sharded cluster: its nodes place topics on n shards as a
// cluster does (shard.Of), serve the calls of the shards they lead (Publish,
// PublishStream, Subscribe, ListTopics, Heartbeat) and answer the others as a node
// does: NOT_LEADER naming the call's shard, its topic and the shard's leader.
type shardCluster struct {
	n int
	// legacy makes the answers those of a server without shards: no shard, no topic.
	legacy bool
	mu     struct {
		sync.Mutex
		leaders map[string]*shardNode // by shard; nil while electing
	}
}

// shardNode is one node of a shardCluster.
type shardNode struct {
	c    *shardCluster
	addr string
	srv  *grpc.Server
	mu   struct {
		sync.Mutex
		calls map[string]int // by "Method topic", served or not
	}
}

func newShardCluster(n int) *shardCluster {
	c := &shardCluster{n: n}
	c.mu.leaders = map[string]*shardNode{}
	return c
}

func (c *shardCluster) start(t *testing.T) *shardNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n := &shardNode{c: c, addr: lis.Addr().String()}
	n.mu.calls = map[string]int{}
	n.srv = grpc.NewServer(grpc.UnknownServiceHandler(n.handle))
	go n.srv.Serve(lis)
	t.Cleanup(n.srv.Stop)
	return n
}

// lead makes n the leader of the shards named.
func (c *shardCluster) lead(n *shardNode, shards ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sh := range shards {
		c.mu.leaders[sh] = n
	}
}

// shardOf is the shard of topic, s0 for none.
func (c *shardCluster) shardOf(topic string) string {
	if topic == "" {
		return shard.Meta
	}
	return shard.Name(shard.Of(topic, c.n))
}

// topicOn returns a topic name, made from prefix, that the cluster places on shard i.
func (c *shardCluster) topicOn(t *testing.T, prefix string, i int) string {
	t.Helper()
	for j := range 1000 {
		if topic := fmt.Sprintf("%s.%d", prefix, j); shard.Of(topic, c.n) == i {
			return topic
		}
	}
	t.Fatalf("no topic %s.N on shard %d of %d", prefix, i, c.n)
	return ""
}

// calls is how many calls of method about topic ("" for none) reached n.
func (n *shardNode) calls(method, topic string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.calls[method+" "+topic]
}

func (n *shardNode) handle(_ any, stream grpc.ServerStream) error {
	full, _ := grpc.MethodFromServerStream(stream)
	method := path.Base(full)
	var req proto.Message
	switch method {
	case "Publish", "PublishStream":
		req = &dmqv1.PublishRequest{}
	case "Subscribe":
		req = &dmqv1.SubscribeRequest{}
	case "ListTopics":
		req = &dmqv1.ListTopicsRequest{}
	case "Heartbeat":
		req = &dmqv1.HeartbeatRequest{}
	default:
		return status.Errorf(codes.Unimplemented, "fake node: %s", method)
	}
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	topic, _ := shard.TopicOf(req)
	n.mu.Lock()
	n.mu.calls[method+" "+topic]++
	n.mu.Unlock()
	if err := n.refuse(topic); err != nil {
		return err
	}
	switch method {
	case "Publish":
		return stream.SendMsg(published(req.(*dmqv1.PublishRequest)))
	case "PublishStream":
		for {
			if err := stream.SendMsg(published(req.(*dmqv1.PublishRequest))); err != nil {
				return err
			}
			if err := stream.RecvMsg(req); err != nil {
				return nil // the producer closed the stream
			}
		}
	case "Subscribe":
		if err := stream.SendMsg(&dmqv1.SubscribeResponse{Response: &dmqv1.SubscribeResponse_Subscribed{Subscribed: &dmqv1.Subscribed{}}}); err != nil {
			return err
		}
		for stream.RecvMsg(req) == nil { // credit, until the consumer closes
		}
		return nil
	case "ListTopics":
		return stream.SendMsg(&dmqv1.ListTopicsResponse{})
	default:
		return stream.SendMsg(&dmqv1.HeartbeatResponse{})
	}
}

// refuse returns the NOT_LEADER answer of n to a call about topic, nil if n serves it.
func (n *shardNode) refuse(topic string) error {
	sh := n.c.shardOf(topic)
	n.c.mu.Lock()
	leader := n.c.mu.leaders[sh]
	n.c.mu.Unlock()
	if leader == n {
		return nil
	}
	md := map[string]string{"shard": sh, "topic": topic}
	if n.c.legacy {
		md = map[string]string{}
	}
	md["leader_id"], md["leader_addr"] = "", ""
	if leader != nil {
		md["leader_id"], md["leader_addr"] = "n-"+leader.addr, leader.addr
	}
	st, err := status.New(codes.Unavailable, "dmq: not the leader of shard "+sh).WithDetails(&errdetails.ErrorInfo{
		Reason: "NOT_LEADER", Domain: "dmq.io", Metadata: md,
	})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

// published is a leader's answer to req: one id per message.
func published(req *dmqv1.PublishRequest) *dmqv1.PublishResponse {
	resp := &dmqv1.PublishResponse{Sequence: req.Sequence}
	for _, m := range req.Messages {
		resp.Results = append(resp.Results, &dmqv1.PublishResult{Id: m.ClientMessageId})
	}
	return resp
}

// TestClientRoutesCallsToTheirShardLeader: node a leads s0 and s1, node b leads s2. The
// client, given a alone, learns from a's NOT_LEADER answer that a topic is on s2, led by
// b, and from then on sends that topic's calls, unary and streams, to b directly, and
// every other call to a; when s2's leadership moves, and when b goes away, s2's calls
// follow.
func TestClientRoutesCallsToTheirShardLeader(t *testing.T) {
	cl := newShardCluster(3)
	a, b := cl.start(t), cl.start(t)
	cl.lead(a, "s0", "s1")
	cl.lead(b, "s2")
	on0, on1, on2 := cl.topicOn(t, "test.shard", 0), cl.topicOn(t, "test.shard", 1), cl.topicOn(t, "test.shard", 2)
	c := dial(t, a.addr, client.WithRetry(client.RetryPolicy{Attempts: 5, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}))
	ctx := ctxFor(t, 30*time.Second)
	publish := func(t *testing.T, topic string) {
		t.Helper()
		if _, err := c.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
			t.Fatalf("Publish(%s): %v", topic, err)
		}
	}
	// want checks how many calls of method about topic each node saw.
	want := func(t *testing.T, method, topic string, onA, onB int) {
		t.Helper()
		if gotA, gotB := a.calls(method, topic), b.calls(method, topic); gotA != onA || gotB != onB {
			t.Fatalf("%s calls about %q: a saw %d, b saw %d; want %d and %d", method, topic, gotA, gotB, onA, onB)
		}
	}

	t.Run("redirect learns the shard", func(t *testing.T) {
		publish(t, on2)
		want(t, "Publish", on2, 1, 1)
		publish(t, on2)
		want(t, "Publish", on2, 1, 2) // straight to b
		if got := client.ShardAddr(c, "s2"); got != b.addr {
			t.Fatalf("s2's calls go to %s, want b %s", got, b.addr)
		}
	})
	t.Run("other calls stay on s0's leader", func(t *testing.T) {
		if _, err := c.ListTopics(ctx, client.TopicFilter{}); err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		want(t, "ListTopics", "", 1, 0)
		publish(t, on0)
		want(t, "Publish", on0, 1, 0)
		publish(t, on1)
		want(t, "Publish", on1, 1, 0)
		if got := client.CurrentAddr(c); got != a.addr {
			t.Fatalf("calls about no topic go to %s, want a %s", got, a.addr)
		}
	})
	t.Run("streams open on the shard's leader", func(t *testing.T) {
		p := c.NewProducer(on2)
		if _, err := p.Publish(ctx, &client.Message{Body: []byte("stream")}); err != nil {
			t.Fatalf("Producer.Publish(%s): %v", on2, err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Producer.Close: %v", err)
		}
		want(t, "PublishStream", on2, 0, 1)
		k, err := c.Subscribe(ctx, on2, "g", func(context.Context, *client.Message) error { return nil })
		if err != nil {
			t.Fatalf("Subscribe(%s): %v", on2, err)
		}
		if err := k.Close(); err != nil {
			t.Fatalf("Consumer.Close: %v", err)
		}
		want(t, "Subscribe", on2, 0, 1)
		// A stream opened on the raw API goes there too with ForTopic.
		raw, err := c.API().PublishStream(ctx, client.ForTopic(on2))
		if err != nil {
			t.Fatalf("PublishStream(ForTopic(%s)): %v", on2, err)
		}
		if err := raw.Send(&dmqv1.PublishRequest{Topic: on2, Messages: []*dmqv1.OutgoingMessage{{Body: []byte("raw")}}}); err != nil {
			t.Fatalf("raw PublishStream Send: %v", err)
		}
		if _, err := raw.Recv(); err != nil {
			t.Fatalf("raw PublishStream Recv: %v", err)
		}
		raw.CloseSend()
		want(t, "PublishStream", on2, 0, 2)
	})
	t.Run("the shard's leader moves", func(t *testing.T) {
		cl.lead(a, "s2")
		publish(t, on2)
		want(t, "Publish", on2, 2, 3) // b refused it, naming a
		publish(t, on2)
		want(t, "Publish", on2, 3, 3)
		if got := client.ShardAddr(c, "s2"); got != a.addr {
			t.Fatalf("s2's calls go to %s, want a %s", got, a.addr)
		}
	})
	t.Run("a node that went away is left", func(t *testing.T) {
		cl.lead(b, "s2")
		publish(t, on2) // a names b again
		want(t, "Publish", on2, 4, 4)
		b.srv.Stop()
		cl.lead(a, "s2")
		publish(t, on2)
		want(t, "Publish", on2, 5, 4)
		if got := client.ShardAddr(c, "s2"); got != a.addr {
			t.Fatalf("s2's calls go to %s after b went away, want a %s", got, a.addr)
		}
		if got := client.CurrentAddr(c); got != a.addr {
			t.Fatalf("calls about no topic go to %s, want a %s", got, a.addr)
		}
	})
}

// TestClientFollowsOneLeaderWithoutShards keeps the behaviour with servers that name no
// shard (older ones) or a single one: whatever the call, the client follows the one
// leader it was told of, and stays there.
func TestClientFollowsOneLeaderWithoutShards(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
		legacy bool
	}{
		{"server without shards", 3, true},
		{"one shard", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newShardCluster(tc.shards)
			cl.legacy = tc.legacy
			a, b := cl.start(t), cl.start(t)
			for i := range tc.shards {
				cl.lead(b, shard.Name(i))
			}
			topic := cl.topicOn(t, "test.noshard", tc.shards-1)
			c := dial(t, a.addr)
			ctx := ctxFor(t, 30*time.Second)
			for range 2 {
				if _, err := c.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
					t.Fatalf("Publish(%s): %v", topic, err)
				}
			}
			// a sees the first call unless the client learned the leader before it (from
			// a redirected call of its own, such as its heartbeat); b sees both.
			if gotA, gotB := a.calls("Publish", topic), b.calls("Publish", topic); gotA > 1 || gotB != 2 {
				t.Fatalf("Publish calls: a saw %d, b saw %d; want at most 1 and 2", gotA, gotB)
			}
			if got := client.CurrentAddr(c); got != b.addr {
				t.Fatalf("client sends to %s, want the leader b %s", got, b.addr)
			}
			if _, err := c.ListTopics(ctx, client.TopicFilter{}); err != nil {
				t.Fatalf("ListTopics: %v", err)
			}
			p := c.NewProducer(topic)
			if _, err := p.Publish(ctx, &client.Message{Body: []byte("stream")}); err != nil {
				t.Fatalf("Producer.Publish: %v", err)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Producer.Close: %v", err)
			}
			if n := a.calls("ListTopics", "") + a.calls("PublishStream", topic); n != 0 {
				t.Fatalf("a, not the leader, saw %d ListTopics and PublishStream calls after the redirect, want 0", n)
			}
		})
	}
}
