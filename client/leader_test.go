package client

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestParseSeeds(t *testing.T) {
	got, err := parseSeeds(" a:1, b:2 ,a:1")
	if err != nil || !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Fatalf("parseSeeds(\" a:1, b:2 ,a:1\") = %v, %v; want [a:1 b:2]", got, err)
	}
	if got, err := parseSeeds(":7000"); err != nil || !slices.Equal(got, []string{":7000"}) {
		t.Fatalf("parseSeeds(\":7000\") = %v, %v; want the local address", got, err)
	}
	for _, bad := range []string{"", "a:1,", "a", "a:1,b", ",a:1", "a:", "a:x", "a:0", "a:70000", "a:1:2", "h1:1,,h2:2"} {
		if _, err := parseSeeds(bad); err == nil {
			t.Errorf("parseSeeds(%q) accepted", bad)
		}
	}
	if _, err := Dial("h1:1,,h2:2"); err == nil {
		t.Error("Dial(\"h1:1,,h2:2\") accepted an empty seed")
	}
}

// notLeader is a follower's answer naming leader ("" during an election), from a server
// without shards.
func notLeader(leader string) error {
	return notLeaderOf("", "", leader)
}

// notLeaderOf is the answer of a node that does not lead shard sh, for a call about topic
// ("" for none), naming sh's leader ("" during an election). sh "" leaves the shard and
// topic out, as a server without shards does.
func notLeaderOf(sh, topic, leader string) error {
	md := map[string]string{"leader_id": "n9", "leader_addr": leader}
	if sh != "" {
		md["shard"] = sh
	}
	if topic != "" {
		md["topic"] = topic
	}
	st, err := status.New(codes.Unavailable, "dmq: node n2 is not the leader").WithDetails(&errdetails.ErrorInfo{
		Reason: notLeaderReason, Domain: notLeaderDomain, Metadata: md,
	})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestLeaderHint(t *testing.T) {
	otherReason, _ := status.New(codes.Unavailable, "x").WithDetails(&errdetails.ErrorInfo{Reason: "OVERLOADED", Domain: notLeaderDomain})
	for _, tc := range []struct {
		name      string
		err       error
		want      hint
		notLeader bool
	}{
		{"nil", nil, hint{}, false},
		{"plain error", errors.New("x"), hint{}, false},
		{"plain unavailable", status.Error(codes.Unavailable, "down"), hint{}, false},
		{"other reason", otherReason.Err(), hint{}, false},
		{"not found", status.Error(codes.NotFound, "no"), hint{}, false},
		{"named leader", notLeader("10.0.0.1:7001"), hint{shard: "s0", leader: "10.0.0.1:7001"}, true},
		{"election", notLeader(""), hint{shard: "s0"}, true},
		{"malformed leader", notLeader("nonsense"), hint{shard: "s0"}, true},
		{"shard and topic", notLeaderOf("s2", "orders", "b:2"), hint{shard: "s2", topic: "orders", leader: "b:2"}, true},
		{"shard, no topic", notLeaderOf("s0", "", "b:2"), hint{shard: "s0", leader: "b:2"}, true},
		{"shard election", notLeaderOf("s3", "orders", ""), hint{shard: "s3", topic: "orders"}, true},
		{"malformed shard", notLeaderOf("x7", "orders", "b:2"), hint{shard: "s0", topic: "orders", leader: "b:2"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, nl := leaderHint(tc.err)
			if h != tc.want || nl != tc.notLeader {
				t.Fatalf("leaderHint(%v) = %+v, %v; want %+v, %v", tc.err, h, nl, tc.want, tc.notLeader)
			}
		})
	}
}

// cur is the address calls about no topic go to.
func (r *router) cur() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.routeLocked(shard.Meta).addr
}

// addrOf is the address calls about topic go to.
func (r *router) addrOf(topic string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrLocked(topic)
}

func TestRouterFollow(t *testing.T) {
	r := newRouter([]string{"a:1", "b:2", "c:3"}, DefaultRetry, nil)
	moves := 0
	r.onMove = func() { moves++ }
	step := func(addr string, err error, want verdict, wantCur string) {
		t.Helper()
		if v := r.follow(addr, err); v != want || r.cur() != wantCur {
			t.Fatalf("follow(%s, %v) = %d, current %s; want %d, current %s", addr, err, v, r.cur(), want, wantCur)
		}
	}
	// Answers that are not about routing leave the current address alone.
	step("a:1", nil, answered, "a:1")
	step("a:1", status.Error(codes.NotFound, "no"), answered, "a:1")
	// A named leader among the seeds.
	step("a:1", notLeader("c:3"), redirected, "c:3")
	// A leader that is not a seed is learned.
	step("c:3", notLeader("d:4"), redirected, "d:4")
	if !slices.Equal(r.mu.addrs, []string{"a:1", "b:2", "c:3", "d:4"}) {
		t.Fatalf("known addresses %v, want the seeds and d:4", r.mu.addrs)
	}
	// The named leader does not answer: rotation goes on from where it was (b), not
	// back to the node that named it.
	step("d:4", status.Error(codes.Unavailable, "connection refused"), unreachable, "b:2")
	// No leader named: the next address.
	step("b:2", notLeader(""), refused, "c:3")
	// A node naming itself is refused too, and skipped.
	step("c:3", notLeader("c:3"), refused, "d:4")
	// A call that fails after another one moved on moves nothing.
	step("a:1", notLeader("b:2"), redirected, "d:4")
	step("b:2", status.Error(codes.Unavailable, "down"), unreachable, "d:4")
	if moves != 5 {
		t.Fatalf("onMove called %d times, want 5 (once per move)", moves)
	}
}

func TestRouterRotationSkipsTheFailedAddress(t *testing.T) {
	r := newRouter([]string{"a:1"}, DefaultRetry, nil)
	// A single address stays current.
	if v := r.follow("a:1", status.Error(codes.Unavailable, "down")); v != unreachable || r.cur() != "a:1" {
		t.Fatalf("single address: verdict %d current %s", v, r.cur())
	}
	// Learned via a redirect, then the leader fails: back to the seed.
	r.follow("a:1", notLeader("b:2"))
	if v := r.follow("b:2", status.Error(codes.Unavailable, "down")); v != unreachable || r.cur() != "a:1" {
		t.Fatalf("after the learned leader failed: verdict %d current %s, want a:1", v, r.cur())
	}
}

func TestRouterResend(t *testing.T) {
	single := newRouter([]string{"a:1"}, DefaultRetry, nil)
	multi := newRouter([]string{"a:1", "b:2"}, DefaultRetry, nil)
	unavailable := status.Error(codes.Unavailable, "down")
	for _, tc := range []struct {
		name       string
		r          *router
		v          verdict
		sent, safe bool
		err        error
		want       bool
	}{
		{"refused by a follower", single, refused, true, false, notLeader(""), true},
		{"redirects exhausted", multi, redirected, true, false, notLeader("b:2"), true},
		{"not sent, cluster", multi, unreachable, false, false, unavailable, true},
		{"not sent, single broker", single, unreachable, false, false, unavailable, false},
		{"not sent, single broker, publish", single, unreachable, false, true, unavailable, true},
		{"sent, unknown outcome", multi, unreachable, true, false, unavailable, false},
		{"sent, unknown outcome, publish", multi, unreachable, true, true, unavailable, true},
		{"deadline, publish", multi, answered, true, true, status.Error(codes.DeadlineExceeded, "slow"), true},
		{"deadline", multi, answered, true, false, status.Error(codes.DeadlineExceeded, "slow"), false},
		{"not found, publish", multi, answered, true, true, status.Error(codes.NotFound, "no topic"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.resend(tc.v, tc.sent, tc.safe, tc.err); got != tc.want {
				t.Fatalf("resend(%d, sent %v, safe %v, %v) = %v, want %v", tc.v, tc.sent, tc.safe, tc.err, got, tc.want)
			}
		})
	}
}

// TestRouterRoutesByShard: a call goes to the route of its topic's shard once a
// NOT_LEADER answer named both, to s0's route otherwise; answers move only the route of
// the shard they name, and a node that does not answer is left by every route at it.
func TestRouterRoutesByShard(t *testing.T) {
	r := newRouter([]string{"a:1", "b:2", "c:3"}, DefaultRetry, nil)
	moves := 0
	r.onMove = func() { moves++ }
	want := func(topic, addr string) {
		t.Helper()
		if got := r.addrOf(topic); got != addr {
			t.Fatalf("a call about %q goes to %s, want %s", topic, got, addr)
		}
	}
	want("orders", "a:1") // nothing learned: s0's route
	if v := r.follow("a:1", notLeaderOf("s2", "orders", "b:2")); v != redirected {
		t.Fatalf("follow(a:1, NOT_LEADER s2 orders b:2) = %d, want redirected", v)
	}
	want("orders", "b:2")
	want("", "a:1")
	want("users", "a:1") // a topic not learned: s0's route
	// A (stale) answer for s0 about a topic leaves it on the default route.
	r.follow("c:3", notLeaderOf("s0", "users", "b:2"))
	want("users", "a:1")
	if _, ok := r.mu.topics["users"]; ok {
		t.Fatal("the topic table holds a topic of s0, the default")
	}
	// s2's leader moved to a.
	r.follow("b:2", notLeaderOf("s2", "orders", "a:1"))
	want("orders", "a:1")
	// An election in s2 moves s2's route on, past a, and not s0's.
	if v := r.follow("a:1", notLeaderOf("s2", "orders", "")); v != refused {
		t.Fatalf("follow(a:1, NOT_LEADER s2 orders election) = %d, want refused", v)
	}
	want("orders", "b:2")
	want("", "a:1")
	// A node that does not answer is left by every route at it: s1 and s2 at b, s0 at a.
	r.follow("a:1", notLeaderOf("s1", "logs", "b:2"))
	want("logs", "b:2")
	if v := r.follow("b:2", status.Error(codes.Unavailable, "connection refused")); v != unreachable {
		t.Fatalf("follow(b:2, Unavailable) = %d, want unreachable", v)
	}
	for _, topic := range []string{"orders", "logs"} {
		if got := r.addrOf(topic); got == "b:2" {
			t.Fatalf("a call about %q still goes to b:2, which does not answer", topic)
		}
	}
	want("", "a:1")
	// A stale answer about s2 from b, no longer its route, moves nothing.
	before := r.addrOf("orders")
	r.follow("b:2", notLeaderOf("s2", "orders", "c:3"))
	want("orders", before)
	if moves != 0 {
		t.Fatalf("onMove called %d times, want 0: s0's route never moved", moves)
	}
	// s0's route moving announces the client.
	r.follow("a:1", notLeaderOf("s0", "", "c:3"))
	want("", "c:3")
	if moves != 1 {
		t.Fatalf("onMove called %d times, want 1", moves)
	}
}

// TestRouterTopicTableIsBounded: the topic -> shard table is cleared when full.
func TestRouterTopicTableIsBounded(t *testing.T) {
	r := newRouter([]string{"a:1", "b:2"}, DefaultRetry, nil)
	for i := range maxTopics {
		r.moveOn(hint{shard: "s1", topic: "t" + strconv.Itoa(i)}, "x:9") // not the route: learns the topic only
	}
	if n := len(r.mu.topics); n != maxTopics {
		t.Fatalf("topic table holds %d topics, want %d", n, maxTopics)
	}
	r.moveOn(hint{shard: "s1", topic: "last"}, "x:9")
	if n := len(r.mu.topics); n != 1 || r.mu.topics["last"] != "s1" {
		t.Fatalf("topic table holds %d topics after it was full, want only the last one", n)
	}
}

// TestCallTopic: a unary call's topic is its request's; a stream's, the one given with
// withTopic.
func TestCallTopic(t *testing.T) {
	for _, tc := range []struct {
		name string
		args any
		opts []grpc.CallOption
		want string
	}{
		{"publish", &dmqv1.PublishRequest{Topic: "orders"}, []grpc.CallOption{&resendSafe{}}, "orders"},
		{"no topic", &dmqv1.ListTopicsRequest{}, nil, ""},
		{"stream", nil, []grpc.CallOption{withTopic("orders")}, "orders"},
		{"stream without topic", nil, nil, ""},
		{"raw stream", nil, []grpc.CallOption{ForTopic("orders")}, "orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callTopic(tc.args, tc.opts); got != tc.want {
				t.Fatalf("callTopic(%v, %v) = %q, want %q", tc.args, tc.opts, got, tc.want)
			}
		})
	}
}

// members is a members trailer as a cluster node sends it.
func members(index uint64, self string, list ...string) metadata.MD {
	md := metadata.MD{}
	md.Set(membersKey, list...)
	md.Set(membersIndexKey, strconv.FormatUint(index, 10))
	md.Set(membersSelfKey, self)
	return md
}

// TestRouterLearnsMembers: the known addresses become the newest members list heard
// (the node that answered under the address dialled); removed nodes, seeds among them,
// are forgotten and the routes on them move; older lists, lists naming addresses that
// cannot be dialled and empty trailers change nothing.
func TestRouterLearnsMembers(t *testing.T) {
	r := newRouter([]string{"s1:1", "s2:1", "s3:1"}, DefaultRetry, nil)
	r.mu.routes["s1"] = route{addr: "s3:1"}
	steps := []struct {
		name  string
		from  string
		tr    metadata.MD
		addrs []string
	}{
		{"no trailer", "s1:1", nil, []string{"s1:1", "s2:1", "s3:1"}},
		{"the members", "s1:1", members(5, "n1", "n1=10.0.0.1:1", "n2=10.0.0.2:1", "n3=10.0.0.3:1"), []string{"s1:1", "10.0.0.2:1", "10.0.0.3:1"}},
		{"n3 replaced by n4", "10.0.0.2:1", members(9, "n2", "n1=10.0.0.1:1", "n2=10.0.0.2:1", "n4=10.0.0.4:1"), []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.4:1"}},
		{"an older list", "10.0.0.3:1", members(7, "n3", "n1=10.0.0.1:1", "n2=10.0.0.2:1", "n3=10.0.0.3:1"), []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.4:1"}},
		{"an address on every interface", "10.0.0.1:1", members(11, "n1", "n1=10.0.0.1:1", "n5=0.0.0.0:1"), []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.4:1"}},
	}
	for _, s := range steps {
		r.learnMembers(s.from, s.tr)
		r.mu.Lock()
		got, s0, s1 := slices.Clone(r.mu.addrs), r.mu.routes[shard.Meta].addr, r.mu.routes["s1"].addr
		r.mu.Unlock()
		if !slices.Equal(got, s.addrs) {
			t.Fatalf("%s: known addresses %v, want %v", s.name, got, s.addrs)
		}
		if !slices.Contains(got, s0) || !slices.Contains(got, s1) {
			t.Fatalf("%s: routes s0 %s and s1 %s, want known addresses %v", s.name, s0, s1, got)
		}
	}
	if !r.askMembers() {
		t.Fatal("after a list that was not taken, the next call does not ask again")
	}
	if r.askMembers() {
		t.Fatalf("a call right after asks again, want once per %s", membersRefresh)
	}
}
