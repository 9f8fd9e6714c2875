package client

import (
	"errors"
	"net"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseSeeds(t *testing.T) {
	got, err := parseSeeds(" a:1, b:2 ,a:1")
	if err != nil || len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Fatalf("parseSeeds = %v, %v", got, err)
	}
	for _, bad := range []string{"", "a:1,", "a", "a:1,b", ",a:1", "a:"} {
		if _, err := parseSeeds(bad); err == nil {
			t.Errorf("parseSeeds(%q) accepted", bad)
		}
	}
	if _, err := Dial("h1:1,,h2:2"); err == nil {
		t.Error("Dial accepted an empty seed")
	}
}

func notLeader(leader string) error {
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(&errdetails.ErrorInfo{
		Reason: "NOT_LEADER", Domain: "dmq.io", Metadata: map[string]string{"leader_id": "n9", "leader_addr": leader},
	})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// pipeConn is a net.Conn whose Close the test can observe.
type pipeConn struct {
	net.Conn
	closed bool
}

func (c *pipeConn) Close() error { c.closed = true; return nil }

func TestFollowMovesToTheLeader(t *testing.T) {
	d := newLeaderDialer([]string{"a:1", "b:2", "c:3"})
	conn := &pipeConn{}
	d.conn = conn

	// Errors that are not NOT_LEADER leave the connection alone.
	for _, err := range []error{nil, errors.New("x"), status.Error(codes.Unavailable, "down"), status.Error(codes.NotFound, "no")} {
		if moved, _ := d.follow(err); moved || conn.closed {
			t.Fatalf("follow(%v) moved", err)
		}
	}
	// A named leader among the seeds.
	if moved, named := d.follow(notLeader("c:3")); !moved || !named || d.cur != 2 || !conn.closed {
		t.Fatalf("to a known leader: moved %v named %v cur %d closed %v", moved, named, d.cur, conn.closed)
	}
	// A leader not among the seeds is learned.
	if moved, _ := d.follow(notLeader("d:4")); !moved || d.addrs[d.cur] != "d:4" || len(d.addrs) != 4 {
		t.Fatalf("to a new leader: addrs %v cur %d", d.addrs, d.cur)
	}
	// No leader known: the next address.
	if moved, named := d.follow(notLeader("")); !moved || named || d.addrs[d.cur] != "a:1" {
		t.Fatalf("without a leader: addrs %v cur %d named %v", d.addrs, d.cur, named)
	}
}

func TestDialSkipsDeadSeeds(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	d := newLeaderDialer([]string{deadAddr, live.Addr().String()})
	c, err := d.dial(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d.cur != 1 {
		t.Fatalf("dialed address %d, want the live one (1)", d.cur)
	}
}
