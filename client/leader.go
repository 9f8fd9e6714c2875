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

	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// A cluster's topics are spread over shards (s0, s1, ...: see package internal/shard),
// each a Raft group with its own leader; a node may lead some shards and follow others.
// Every node listens for clients, but a call is served only by the leader of its shard:
// the shard of the topic it names, s0 for calls that name none. Another node answers
// the call, unary or streaming, with Unavailable and an ErrorInfo (reason NOT_LEADER,
// domain dmq.io) whose metadata names the call's shard and topic (none from a server
// without shards: s0 is meant) and that shard's leader's client address, leader_addr,
// empty while an election is in progress. A node that went away refuses connections or
// fails calls with a plain Unavailable.
//
// The router is the client's grpc.ClientConnInterface: the generated BrokerClient, and
// through it every SDK call and Client.API, sends each call through it. It keeps one
// gRPC connection per address it has used (the seeds, then leaders learned from
// NOT_LEADER answers), made on first use, and for each shard it has heard of a route:
// the address the shard's calls go to. s0's route always exists and is the default:
// a call goes to the route of its topic's shard when the router knows both (it learns
// a topic's shard from the NOT_LEADER answers that name them), to s0's otherwise. The
// topic is the request's (shard.TopicOf) or, for streams, which open before their first
// message, the one given with withTopic. A NOT_LEADER answer moves the route of the
// shard it names:
//
//   - naming another node: that node becomes the route and the call is sent again at
//     once (a redirect; at most maxRedirects in a row, then as below);
//   - naming none: the route moves to the next known address and the call is sent again
//     after the RetryPolicy's backoff; the node did nothing, so any call may be repeated;
//
// and a plain Unavailable moves every route that points at the node:
//
//   - each to the next known address; the call is sent again after the backoff only
//     when it never left the client (no node was reachable, see pick) or it is marked
//     resendSafe (Publish: its client message ids make a resend store nothing twice).
//     Other calls return the error: the node may have done them.
//
// With one shard, or a server that names none, only s0's route exists and all calls
// follow the one leader.
//
// Streams cannot be sent again by the router: it opens them on their route (a reachable
// address when it can), and what they fail with moves the routes the same way; Producer
// and Consumer reopen them (producer.go, consumer.go).

const (
	notLeaderReason = "NOT_LEADER"
	notLeaderDomain = "dmq.io"
	// maxRedirects bounds the redirects one call follows in a row without a pause: nodes
	// with stale views of the leader could otherwise send it back and forth.
	maxRedirects = 3
	// maxTopics bounds the topic -> shard table. A topic's shard never changes (it is
	// a hash of its name), so entries never go stale, but a client may name any
	// number of topics over its life: when the table is full it is cleared, and a
	// forgotten topic costs one redirect from s0's leader to learn again.
	maxTopics = 100_000
)

// resendSafe marks a call as safe to send again after an ambiguous failure, one where
// the node may or may not have done it. Publish carries it. Invoke sets maybeDone when
// it sends the call again after such a failure: a refusal of a later attempt then does
// not say that nothing was done, and is returned as ErrOutcomeUnknown.
type resendSafe struct {
	grpc.EmptyCallOption
	maybeDone bool
}

// topicOption names the topic of a stream, which the router cannot read from a request
// when it opens it: the stream goes to the leader of the topic's shard.
type topicOption struct {
	grpc.EmptyCallOption
	topic string
}

// withTopic routes a stream about topic (one PublishStream or Subscribe names one).
func withTopic(topic string) grpc.CallOption { return topicOption{topic: topic} }

// ForTopic is the call option that sends a stream opened on Client.API() (Subscribe,
// PublishStream) to the leader of topic's shard: the router cannot read the topic from
// a stream's messages, which come after it opens. Producer and Consumer pass it
// themselves; unary calls need none.
func ForTopic(topic string) grpc.CallOption { return withTopic(topic) }

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

// hint is what a NOT_LEADER answer says.
type hint struct {
	shard  string // the call's shard; shard.Meta when the answer names none or a malformed one
	topic  string // the call's topic; "" when it names none
	leader string // the shard's leader's address; "" when it names none or a malformed one
}

// leaderHint reads a NOT_LEADER answer: notLeader is true when err is one.
func leaderHint(err error) (h hint, notLeader bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return hint{}, false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Reason != notLeaderReason || info.Domain != notLeaderDomain {
			continue
		}
		h = hint{shard: info.Metadata["shard"], topic: info.Metadata["topic"], leader: info.Metadata["leader_addr"]}
		if _, err := shard.Index(h.shard); err != nil {
			h.shard = shard.Meta
		}
		if !validAddr(h.leader) {
			h.leader = ""
		}
		return h, true
	}
	return hint{}, false
}

// isRedirect reports whether err is a NOT_LEADER answer naming a leader: the call can be
// sent again at once, to the node the router now points at.
func isRedirect(err error) bool {
	h, _ := leaderHint(err)
	return h.leader != ""
}

// verdict is what a failed call tells the router about the node it went to.
type verdict int

const (
	answered    verdict = iota // not a routing matter: the node's own answer
	redirected                 // NOT_LEADER naming another node, now the shard's route
	refused                    // NOT_LEADER naming none (or itself); the node did nothing
	unreachable                // plain Unavailable: the node is down, cut off or went away
)

// route is where the calls of one shard go.
type route struct {
	addr string
	// next is the rotation cursor into the known addresses. It is separate from addr
	// so that a redirect to a node that then fails does not send the shard back to
	// the node that named it: rotation still visits every known address in turn.
	next int
}

// router sends calls to the leaders of their shards; see the comment at the top of the
// file.
type router struct {
	dialOpts []grpc.DialOption
	retry    RetryPolicy
	// onMove, when set, is called after s0's route changed (without the lock): the
	// client announces itself to the new node at once.
	onMove func()

	mu struct {
		sync.Mutex
		addrs  []string                    // seeds, then leaders learned; never shrinks
		conns  map[string]*grpc.ClientConn // made on first use, closed by close
		routes map[string]route            // by shard; shard.Meta's always set, the default
		topics map[string]string           // topic -> shard, s0 left out; maxTopics at most
		closed bool
	}
}

var _ grpc.ClientConnInterface = (*router)(nil)

func newRouter(seeds []string, retry RetryPolicy, dialOpts []grpc.DialOption) *router {
	r := &router{dialOpts: dialOpts, retry: retry}
	r.mu.addrs = slices.Clone(seeds)
	r.mu.conns = map[string]*grpc.ClientConn{}
	r.mu.routes = map[string]route{shard.Meta: {addr: seeds[0]}}
	r.mu.topics = map[string]string{}
	return r
}

// routeLocked returns the route of shard sh: its own, or s0's.
func (r *router) routeLocked(sh string) route {
	if rt, ok := r.mu.routes[sh]; ok {
		return rt
	}
	return r.mu.routes[shard.Meta]
}

// addrLocked returns the address the calls about topic ("" for none) go to.
func (r *router) addrLocked(topic string) string {
	sh, ok := r.mu.topics[topic]
	if !ok {
		sh = shard.Meta
	}
	return r.routeLocked(sh).addr
}

// conn returns the address the calls about topic ("" for none) go to and its
// connection, made on first use.
func (r *router) conn(topic string) (string, *grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return "", nil, errClientClosed
	}
	addr := r.addrLocked(topic)
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

// pick returns the address calls about topic go to and its connection, skipping
// addresses that cannot be connected to while another is known. ready is false when no
// known address could be connected to: a call made on cc then fails without having been
// sent.
//
// NB: a connection that becomes ready between the check and the call makes the call go
// out after all; it then either succeeds or fails on a node that just came up.
func (r *router) pick(ctx context.Context, topic string) (addr string, cc *grpc.ClientConn, ready bool, err error) {
	for range r.known() {
		if addr, cc, err = r.conn(topic); err != nil {
			return "", nil, false, err
		}
		if ready = connReady(ctx, cc); ready || ctx.Err() != nil {
			return addr, cc, ready, nil
		}
		r.leave(addr)
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

// follow reads the outcome of a call sent to addr and moves routes if it says so. A
// call that fails after another one moved a route on leaves that route alone.
func (r *router) follow(addr string, err error) verdict {
	if status.Code(err) != codes.Unavailable {
		return answered
	}
	h, notLeader := leaderHint(err)
	switch {
	case !notLeader:
		r.leave(addr)
		return unreachable
	case h.leader != "" && h.leader != addr:
		r.moveOn(h, addr)
		return redirected
	default:
		h.leader = ""
		r.moveOn(h, addr)
		return refused
	}
}

// moveOn learns the topic's shard and makes h.leader the route of h.shard, learning its
// address if needed, or, with h.leader "", the next known address other than addr; only
// while the shard's route is addr.
func (r *router) moveOn(h hint, addr string) {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return
	}
	if h.topic != "" {
		if len(r.mu.topics) >= maxTopics {
			clear(r.mu.topics)
		}
		if h.shard == shard.Meta {
			delete(r.mu.topics, h.topic) // the default: nothing to remember
		} else {
			r.mu.topics[h.topic] = h.shard
		}
	}
	rt := r.routeLocked(h.shard)
	if rt.addr != addr {
		r.mu.Unlock()
		return
	}
	if h.leader != "" {
		if !slices.Contains(r.mu.addrs, h.leader) {
			r.mu.addrs = append(r.mu.addrs, h.leader)
		}
		rt.addr = h.leader
	} else {
		rt = r.rotateLocked(rt)
	}
	r.mu.routes[h.shard] = rt
	r.mu.Unlock()
	if h.shard == shard.Meta && rt.addr != addr && r.onMove != nil {
		r.onMove()
	}
}

// leave moves every route at addr, a node that does not answer, to the next known
// address.
func (r *router) leave(addr string) {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return
	}
	moved := false
	for sh, rt := range r.mu.routes {
		if rt.addr == addr {
			rt = r.rotateLocked(rt)
			r.mu.routes[sh] = rt
			moved = moved || sh == shard.Meta && rt.addr != addr
		}
	}
	r.mu.Unlock()
	if moved && r.onMove != nil {
		r.onMove()
	}
}

// rotateLocked returns rt moved to the next known address after its cursor other than
// its own address; unchanged when it is the only one.
func (r *router) rotateLocked(rt route) route {
	for range len(r.mu.addrs) {
		rt.next = (rt.next + 1) % len(r.mu.addrs)
		if a := r.mu.addrs[rt.next]; a != rt.addr {
			rt.addr = a
			break
		}
	}
	return rt
}

// callTopic is the topic a call is about: the one given with withTopic, else the one its
// request names ("" for none).
func callTopic(args any, opts []grpc.CallOption) string {
	for _, o := range opts {
		if t, ok := o.(topicOption); ok {
			return t.topic
		}
	}
	topic, _ := shard.TopicOf(args)
	return topic
}

// Invoke sends a unary call to the leader of its shard; see the comment at the top of
// the file.
func (r *router) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	var marked *resendSafe
	for _, o := range opts {
		if rs, ok := o.(*resendSafe); ok {
			marked = rs
		}
	}
	safe := marked != nil
	topic := callTopic(args, opts)
	redirects := 0
	for attempt := 1; ; {
		addr, cc, ready, err := r.pick(ctx, topic)
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
			if safe && marked.maybeDone && !retryable(err) {
				return outcomeUnknown(err)
			}
			return err
		}
		if safe && ready && v != redirected && v != refused {
			marked.maybeDone = true // it reached a node, which may have done it
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

// NewStream opens a stream on the route of its topic's shard (see withTopic; a reachable
// address when it can); what the stream fails with moves the routes, as for unary calls.
func (r *router) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	addr, cc, _, err := r.pick(ctx, callTopic(nil, opts))
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
