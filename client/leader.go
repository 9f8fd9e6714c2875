package client

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// A cluster's nodes all listen for clients, but only the leader serves: the others
// answer every call, unary or streaming, with Unavailable and an ErrorInfo (reason
// NOT_LEADER, domain dmq.io) whose metadata names the leader's client address,
// leader_addr, empty while an election is in progress. A node that went away refuses
// connections or fails calls with a plain Unavailable.
//
// The router is the client's grpc.ClientConnInterface: the generated BrokerClient, and
// through it every SDK call and Client.API, sends each call through it. It keeps one
// gRPC connection per address it has used (the seeds, then leaders learned from
// NOT_LEADER answers), made on first use, and the current address calls go to:
//
//   - NOT_LEADER naming another node: that node becomes current and the call is sent
//     again at once (a redirect; at most maxRedirects in a row, then as below);
//   - NOT_LEADER naming none: the next known address becomes current and the call is
//     sent again after the RetryPolicy's backoff; the node did nothing, so any call
//     may be repeated;
//   - plain Unavailable: the next known address becomes current; the call is sent again
//     after the backoff only when it never left the client (no node was reachable, see
//     pick) or it is marked resendSafe (Publish: its client message ids make a resend
//     store nothing twice). Other calls return the error: the node may have done them.
//
// Streams cannot be sent again by the router: it opens them on the current address (a
// reachable one when it can), and what they fail with moves the current address the
// same way; Producer and Consumer reopen them (producer.go, consumer.go).

const (
	notLeaderReason = "NOT_LEADER"
	notLeaderDomain = "dmq.io"
	// maxRedirects bounds the redirects one call follows in a row without a pause: nodes
	// with stale views of the leader could otherwise send it back and forth.
	maxRedirects = 3
)

// resendSafe marks a call as safe to send again after an ambiguous failure, one where
// the node may or may not have done it. Publish carries it.
type resendSafe struct{ grpc.EmptyCallOption }

// errClientClosed is returned by calls made after Client.Close.
var errClientClosed = status.Error(codes.Canceled, "dmq: the client is closed")

// parseSeeds splits "h1:p1,h2:p2" into addresses, refusing empty or malformed ones;
// duplicates are dropped.
func parseSeeds(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if !validAddr(a) {
			return nil, fmt.Errorf("broker address %q is not host:port", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// validAddr reports whether a is host:port with a numeric port (the host may be
// empty: the local machine).
func validAddr(a string) bool {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p > 0
}

// leaderHint reads a NOT_LEADER answer: notLeader is true when err is one, and leader
// is the leader's address it names ("" when it names none or a malformed one).
func leaderHint(err error) (leader string, notLeader bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Reason != notLeaderReason || info.Domain != notLeaderDomain {
			continue
		}
		if leader = info.Metadata["leader_addr"]; !validAddr(leader) {
			leader = ""
		}
		return leader, true
	}
	return "", false
}

// isRedirect reports whether err is a NOT_LEADER answer naming a leader: the call can be
// sent again at once, to the node the router now points at.
func isRedirect(err error) bool {
	leader, _ := leaderHint(err)
	return leader != ""
}

// verdict is what a failed call tells the router about the node it went to.
type verdict int

const (
	answered    verdict = iota // not a routing matter: the node's own answer
	redirected                 // NOT_LEADER naming another node, now current
	refused                    // NOT_LEADER naming none (or itself); the node did nothing
	unreachable                // plain Unavailable: the node is down, cut off or went away
)

// router sends calls to the current leader; see the comment at the top of the file.
type router struct {
	dialOpts []grpc.DialOption
	retry    RetryPolicy
	// onMove, when set, is called after the current address changed (without the lock):
	// the client announces itself to the new node at once.
	onMove func()

	mu struct {
		sync.Mutex
		addrs  []string                    // seeds, then leaders learned; never shrinks
		conns  map[string]*grpc.ClientConn // made on first use, closed by close
		cur    string                      // where calls go
		next   int                         // rotation cursor into addrs
		closed bool
	}
}

var _ grpc.ClientConnInterface = (*router)(nil)

func newRouter(seeds []string, retry RetryPolicy, dialOpts []grpc.DialOption) *router {
	r := &router{dialOpts: dialOpts, retry: retry}
	r.mu.addrs = slices.Clone(seeds)
	r.mu.conns = map[string]*grpc.ClientConn{}
	r.mu.cur = seeds[0]
	return r
}

// current returns the address calls go to and its connection, made on first use.
func (r *router) current() (string, *grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return "", nil, errClientClosed
	}
	addr := r.mu.cur
	if cc := r.mu.conns[addr]; cc != nil {
		return addr, cc, nil
	}
	// NewClient does no I/O: the connection is made by the first call.
	cc, err := grpc.NewClient("passthrough:///"+addr, r.dialOpts...)
	if err != nil {
		return "", nil, status.Errorf(codes.Unavailable, "dmq: connect to %s: %v", addr, err)
	}
	r.mu.conns[addr] = cc
	return addr, cc, nil
}

// known is the number of addresses the router knows.
func (r *router) known() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.addrs)
}

// pick returns the current address and its connection, skipping addresses that cannot
// be connected to while another is known. ready is false when no known address could be
// connected to: a call made on cc then fails without having been sent.
//
// NB: a connection that becomes ready between the check and the call makes the call go
// out after all; it then either succeeds or fails on a node that just came up.
func (r *router) pick(ctx context.Context) (addr string, cc *grpc.ClientConn, ready bool, err error) {
	for range r.known() {
		if addr, cc, err = r.current(); err != nil {
			return "", nil, false, err
		}
		if ready = connReady(ctx, cc); ready || ctx.Err() != nil {
			return addr, cc, ready, nil
		}
		r.moveOn(addr, "")
	}
	return addr, cc, false, nil
}

// connectGrace is how long a connection that failed before gets to come up when a call
// needs it. gRPC waits out a growing backoff before reconnecting to a node that went
// away; a node that restarted (and may lead again) is back within milliseconds, so the
// router asks for a reconnection at once and waits this long before moving on.
const connectGrace = 200 * time.Millisecond

// connReady connects cc if needed and waits until it is ready (true) or failed to
// connect, is closed, or ctx ended (false).
func connReady(ctx context.Context, cc *grpc.ClientConn) bool {
	retried := false
	for {
		s := cc.GetState()
		wait := ctx
		switch s {
		case connectivity.Ready:
			return true
		case connectivity.Shutdown:
			return false
		case connectivity.Idle:
			cc.Connect()
		case connectivity.TransientFailure:
			// The state stays TransientFailure while gRPC reconnects: wait for
			// Ready, for connectGrace at most.
			if retried {
				return false
			}
			retried = true
			cc.ResetConnectBackoff()
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, connectGrace)
			defer cancel()
		}
		if !cc.WaitForStateChange(wait, s) {
			return false
		}
	}
}

// follow reads the outcome of a call sent to addr and moves the current address if it
// says so. A call that fails after another one moved on leaves the current address alone.
func (r *router) follow(addr string, err error) verdict {
	if status.Code(err) != codes.Unavailable {
		return answered
	}
	leader, notLeader := leaderHint(err)
	switch {
	case leader != "" && leader != addr:
		r.moveOn(addr, leader)
		return redirected
	case notLeader:
		r.moveOn(addr, "")
		return refused
	default:
		r.moveOn(addr, "")
		return unreachable
	}
}

// moveOn makes leader current, learning it if needed, or, with leader "", the next known
// address after the rotation cursor other than addr; only while addr is current.
func (r *router) moveOn(addr, leader string) {
	r.mu.Lock()
	if r.mu.closed || r.mu.cur != addr {
		r.mu.Unlock()
		return
	}
	if leader != "" {
		if !slices.Contains(r.mu.addrs, leader) {
			r.mu.addrs = append(r.mu.addrs, leader)
		}
		r.mu.cur = leader
	} else {
		// The cursor is separate from cur so that a redirect to a node that then fails
		// does not send the client back to the node that named it: rotation still
		// visits every known address in turn.
		for range len(r.mu.addrs) {
			r.mu.next = (r.mu.next + 1) % len(r.mu.addrs)
			if r.mu.addrs[r.mu.next] != addr {
				r.mu.cur = r.mu.addrs[r.mu.next]
				break
			}
		}
	}
	moved := r.mu.cur != addr
	r.mu.Unlock()
	if moved && r.onMove != nil {
		r.onMove()
	}
}

// Invoke sends a unary call to the leader; see the comment at the top of the file.
func (r *router) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	safe := slices.ContainsFunc(opts, func(o grpc.CallOption) bool { _, ok := o.(resendSafe); return ok })
	redirects := 0
	for attempt := 1; ; {
		addr, cc, ready, err := r.pick(ctx)
		if err != nil {
			return err
		}
		err = cc.Invoke(ctx, method, args, reply, opts...)
		if err == nil {
			return nil
		}
		v := r.follow(addr, err)
		if v == redirected && redirects < maxRedirects {
			redirects++
			continue
		}
		if !r.resend(v, ready, safe, err) || attempt >= r.retry.Attempts || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(r.retry.backoff(attempt)):
		case <-ctx.Done():
			return err
		}
		attempt++
		redirects = 0
	}
}

// resend reports whether a call that failed with err (and verdict v) may be sent again
// after a backoff. sent is false when the call could not leave the client.
func (r *router) resend(v verdict, sent, safe bool, err error) bool {
	switch v {
	case redirected, refused: // redirects exhausted, or no leader yet: nothing was done
		return true
	case unreachable:
		// Not sent: another node may answer; with a single address, only
		// publishes wait for the broker to come back, as they always have.
		return safe || !sent && r.known() > 1
	}
	return safe && retryable(err)
}

// NewStream opens a stream on the current address (a reachable one when it can); what
// the stream fails with moves the current address, as for unary calls.
func (r *router) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	addr, cc, _, err := r.pick(ctx)
	if err != nil {
		return nil, err
	}
	s, err := cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		r.follow(addr, err)
		return nil, err
	}
	return &followingStream{ClientStream: s, r: r, addr: addr}, nil
}

// followingStream reports what its stream fails with to the router.
type followingStream struct {
	grpc.ClientStream
	r    *router
	addr string
}

func (s *followingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.r.follow(s.addr, err)
	}
	return err
}

func (s *followingStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil {
		s.r.follow(s.addr, err)
	}
	return err
}

// close closes every connection; calls made afterwards fail with errClientClosed.
func (r *router) close() error {
	r.mu.Lock()
	r.mu.closed = true // no connection is made from now on
	conns := slices.Collect(maps.Values(r.mu.conns))
	r.mu.Unlock()
	var err error
	for _, cc := range conns {
		if e := cc.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}
