package client

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
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

// notLeader is a follower's answer naming leader ("" during an election).
func notLeader(leader string) error {
	st, err := status.New(codes.Unavailable, "dmq: node n2 is not the leader").WithDetails(&errdetails.ErrorInfo{
		Reason: notLeaderReason, Domain: notLeaderDomain, Metadata: map[string]string{"leader_id": "n9", "leader_addr": leader},
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
		leader    string
		notLeader bool
	}{
		{"nil", nil, "", false},
		{"plain error", errors.New("x"), "", false},
		{"plain unavailable", status.Error(codes.Unavailable, "down"), "", false},
		{"other reason", otherReason.Err(), "", false},
		{"not found", status.Error(codes.NotFound, "no"), "", false},
		{"named leader", notLeader("10.0.0.1:7001"), "10.0.0.1:7001", true},
		{"election", notLeader(""), "", true},
		{"malformed leader", notLeader("nonsense"), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leader, nl := leaderHint(tc.err)
			if leader != tc.leader || nl != tc.notLeader {
				t.Fatalf("leaderHint(%v) = %q, %v; want %q, %v", tc.err, leader, nl, tc.leader, tc.notLeader)
			}
		})
	}
}

func TestRouterFollow(t *testing.T) {
	r := newRouter([]string{"a:1", "b:2", "c:3"}, DefaultRetry, nil)
	moves := 0
	r.onMove = func() { moves++ }
	step := func(addr string, err error, want verdict, wantCur string) {
		t.Helper()
		if v := r.follow(addr, err); v != want || r.mu.cur != wantCur {
			t.Fatalf("follow(%s, %v) = %d, current %s; want %d, current %s", addr, err, v, r.mu.cur, want, wantCur)
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
	if v := r.follow("a:1", status.Error(codes.Unavailable, "down")); v != unreachable || r.mu.cur != "a:1" {
		t.Fatalf("single address: verdict %d current %s", v, r.mu.cur)
	}
	// Learned via a redirect, then the leader fails: back to the seed.
	r.follow("a:1", notLeader("b:2"))
	if v := r.follow("b:2", status.Error(codes.Unavailable, "down")); v != unreachable || r.mu.cur != "a:1" {
		t.Fatalf("after the learned leader failed: verdict %d current %s, want a:1", v, r.mu.cur)
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
