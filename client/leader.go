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
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
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
// NOT_LEADER answers, or the members a node listed: see below), made on first use, and for each shard it has heard of a route:
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
// A node that stops answering without closing its connections fails its calls and
// streams with a plain Unavailable once the router's watchdog finds it out, and the
// router avoids it until it answers again (watchdog.go).
//
// The known addresses follow the cluster's members: a unary call, on the client's first
// call, every membersRefresh and after a route moved, asks the node it reaches for them
// (metadata dmq-members). A cluster node answers in the call's trailer, whatever the
// call's outcome, with every member's client address and the index of the configuration
// they are from (see internal/server/cluster_members.go). The router keeps the newest list
// it heard as its addresses: nodes added since are reached, and nodes removed (the seeds
// among them) are forgotten, their routes moved and their connections closed a little
// later. The node that answered stays under the address the client dialled.
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
	// membersRefresh is how often the router asks a node for the cluster's members.
	membersRefresh = 5 * time.Second
	// forgetGrace is how long the connection to a forgotten address is kept, for the
	// calls still on it.
	forgetGrace = 30 * time.Second
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
// file, and watchdog.go for nodes that stop answering.
type router struct {
	dialOpts []grpc.DialOption
	retry    RetryPolicy
	// keepSeeds, set before the first call, turns the members exchange off (KeepSeeds).
	keepSeeds bool
	// onMove, when set, is called after s0's route changed (without the lock): the
	// client announces itself to the new node at once.
	onMove func()
	// ctx is canceled by close: the watchdog's probes end.
	ctx    context.Context
	cancel context.CancelFunc
	quit   chan struct{} // closed by close: the watchdog stops
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		addrs  []string          // seeds, then leaders learned; then the members (learnMembers)
		conns  map[string]*conn  // made on first use, closed by close
		routes map[string]route  // by shard; shard.Meta's always set, the default
		topics map[string]string // topic -> shard, s0 left out; maxTopics at most
		// suspects are the addresses of nodes that stopped answering (see watchdog.go),
		// with when they were found out; cleared when they answer again.
		suspects map[string]time.Time
		closed   bool
		// membersIndex is the configuration index of the members list last learned;
		// askAt is when the next call asks for the members (zero: the next call).
		membersIndex uint64
		askAt        time.Time
	}
}

var _ grpc.ClientConnInterface = (*router)(nil)

func newRouter(seeds []string, retry RetryPolicy, dialOpts []grpc.DialOption) *router {
	r := &router{dialOpts: dialOpts, retry: retry, quit: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.addrs = slices.Clone(seeds)
	r.mu.conns = map[string]*conn{}
	r.mu.routes = map[string]route{shard.Meta: {addr: seeds[0]}}
	r.mu.topics = map[string]string{}
	r.mu.suspects = map[string]time.Time{}
	r.wg.Add(1)
	go r.watch()
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

// conn returns the connection of the address the calls about topic ("" for none) go
// to, made on first use, and whether that node is a suspect (see watchdog.go).
func (r *router) conn(topic string) (c *conn, suspect bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return nil, false, errClientClosed
	}
	addr := r.addrLocked(topic)
	c, err = r.connLocked(addr)
	return c, r.suspectLocked(addr), err
}

// connLocked returns the connection to addr, made on first use.
func (r *router) connLocked(addr string) (*conn, error) {
	if c := r.mu.conns[addr]; c != nil {
		return c, nil
	}
	// NewClient does no I/O: the connection is made by the first call.
	cc, err := grpc.NewClient("passthrough:///"+addr, r.dialOpts...)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dmq: connect to %s: %v", addr, err)
	}
	c := &conn{addr: addr, cc: cc}
	r.mu.conns[addr] = c
	return c, nil
}

// known is the number of addresses the router knows.
func (r *router) known() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.addrs)
}

// pick returns the connection calls about topic go to, skipping addresses that cannot
// be connected to, and suspects (nodes that stopped answering: see watchdog.go), while
// another is known. ready is false when no known address could be connected to: a call
// made on it then fails without having been sent (or is sent to a suspect).
//
// NB: a connection that becomes ready between the check and the call makes the call go
// out after all; it then either succeeds or fails on a node that just came up.
func (r *router) pick(ctx context.Context, topic string) (c *conn, ready bool, err error) {
	for range r.known() {
		var suspect bool
		if c, suspect, err = r.conn(topic); err != nil {
			return nil, false, err
		}
		if !suspect {
			if ready = connReady(ctx, c.cc); ready || ctx.Err() != nil {
				return c, ready, nil
			}
		}
		r.leave(c.addr)
	}
	return c, false, nil
}

const (
	// connectGrace is how long a connection that failed before gets to come up when a
	// call needs it. gRPC waits out a growing backoff before reconnecting to a node that
	// went away; a node that restarted (and may lead again) is back within
	// milliseconds, so the router asks for a reconnection at once and waits this long
	// before moving on.
	connectGrace = 200 * time.Millisecond
	// connectWait is how long a connection being made gets before the router moves on.
	// A stopped node's kernel may accept the TCP connection while nothing answers the
	// handshake; gRPC gives up on it only after MinConnectTimeout.
	connectWait = time.Second
)

// connReady connects cc if needed and waits until it is ready (true) or failed to
// connect, is closed, took connectWait to connect, or ctx ended (false).
func connReady(ctx context.Context, cc *grpc.ClientConn) bool {
	retried := false
	connecting, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	for {
		s := cc.GetState()
		wait := connecting
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
	r.mu.askAt = time.Time{} // the members may have changed
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
	r.mu.askAt = time.Time{}
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
	var since time.Time // the first failure
	for attempt := 1; ; {
		c, ready, err := r.pick(ctx, topic)
		if err != nil {
			return err
		}
		c.busy.Add(1)
		if r.askMembers() {
			var tr metadata.MD
			err = c.explain(ctx, c.cc.Invoke(metadata.AppendToOutgoingContext(ctx, membersKey, "1"), method, args, reply, append(slices.Clip(opts), grpc.Trailer(&tr))...))
			r.learnMembers(c.addr, tr)
		} else {
			err = c.explain(ctx, c.cc.Invoke(ctx, method, args, reply, opts...))
		}
		c.busy.Add(-1)
		if err == nil {
			return nil
		}
		v := r.follow(c.addr, err)
		if v == redirected && redirects < maxRedirects {
			redirects++
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		// No leader yet: the call is sent again every electionPoll to follow the
		// election's end closely, and those sends count against MaxElapsed only.
		poll := v == refused && r.retry.Attempts > 1 && time.Since(since)+electionPoll < r.retry.MaxElapsed
		if !poll && (!r.resend(v, ready, safe, err) || attempt >= r.retry.Attempts) || ctx.Err() != nil {
			if safe && marked.maybeDone && !retryable(err) {
				return outcomeUnknown(err)
			}
			return err
		}
		if safe && ready && v != redirected && v != refused {
			marked.maybeDone = true // it reached a node, which may have done it
		}
		wait := r.retry.backoff(attempt)
		if poll {
			wait = min(wait, electionPoll)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		if !poll {
			attempt++
		}
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
//
// The stream counts as a call in progress on its connection (the watchdog probes the
// node) until it fails or its context ends.
func (r *router) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c, _, err := r.pick(ctx, callTopic(nil, opts))
	if err != nil {
		return nil, err
	}
	c.busy.Add(1)
	s, err := c.cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		c.busy.Add(-1)
		err = c.explain(ctx, err)
		r.follow(c.addr, err)
		return nil, err
	}
	fs := &followingStream{ClientStream: s, r: r, c: c, ctx: ctx}
	fs.stop = context.AfterFunc(ctx, fs.end)
	return fs, nil
}

// followingStream reports what its stream fails with to the router.
type followingStream struct {
	grpc.ClientStream
	r     *router
	c     *conn
	ctx   context.Context
	stop  func() bool // stops the AfterFunc of ctx
	ended atomic.Bool
}

// end stops counting the stream as a call in progress, once.
func (s *followingStream) end() {
	if s.ended.CompareAndSwap(false, true) {
		s.c.busy.Add(-1)
	}
}

func (s *followingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		// Any error ends a stream's receiving side, io.EOF included.
		s.stop()
		s.end()
		err = s.c.explain(s.ctx, err)
		s.r.follow(s.c.addr, err)
	}
	return err
}

func (s *followingStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil {
		// io.EOF says the stream ended: RecvMsg returns why.
		err = s.c.explain(s.ctx, err)
		s.r.follow(s.c.addr, err)
	}
	return err
}

// Metadata of the members exchange (see the comment at the top of the file).
const (
	membersKey      = "dmq-members"
	membersIndexKey = "dmq-members-index"
	membersSelfKey  = "dmq-members-self"
)

// askMembers reports whether the next call asks for the members, and if so sets when the
// one after asks.
func (r *router) askMembers() bool {
	if r.keepSeeds {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.mu.closed || now.Before(r.mu.askAt) {
		return false
	}
	r.mu.askAt = now.Add(membersRefresh)
	return true
}

// learnMembers reads the members a node at addr listed in a call's trailer, and makes
// them the known addresses if they are the newest heard. A trailer without them (the
// call failed before reaching a node, a node that is not a member, a server without
// cluster) changes nothing but asks again on the next call.
func (r *router) learnMembers(addr string, tr metadata.MD) {
	index, err := strconv.ParseUint(first(tr.Get(membersIndexKey)), 10, 64)
	self := first(tr.Get(membersSelfKey))
	var addrs []string
	for _, m := range tr.Get(membersKey) {
		id, a, ok := strings.Cut(m, "=")
		if id == self {
			a = addr // as this client reaches it
		}
		if !ok || !validAddr(a) || unspecifiedHost(a) {
			err = fmt.Errorf("member address %q", m) // not to be dialled from here: keep what is known
			break
		}
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	r.mu.Lock()
	if err != nil || len(addrs) == 0 || r.mu.closed || index < r.mu.membersIndex {
		if err != nil || len(addrs) == 0 {
			r.mu.askAt = time.Time{}
		}
		r.mu.Unlock()
		return
	}
	r.mu.membersIndex = index
	var forgotten []string
	for _, a := range r.mu.addrs {
		if !slices.Contains(addrs, a) {
			forgotten = append(forgotten, a)
		}
	}
	r.mu.addrs = addrs
	moved := false
	for sh, rt := range r.mu.routes {
		if !slices.Contains(addrs, rt.addr) {
			r.mu.routes[sh] = r.rotateLocked(rt)
			moved = moved || sh == shard.Meta
		}
	}
	r.mu.Unlock()
	for _, a := range forgotten {
		time.AfterFunc(forgetGrace, func() { r.forget(a) })
	}
	if moved && r.onMove != nil {
		r.onMove()
	}
}

// forget closes the connection to a, unless a is known again.
func (r *router) forget(a string) {
	r.mu.Lock()
	c := r.mu.conns[a]
	if r.mu.closed || c == nil || slices.Contains(r.mu.addrs, a) {
		r.mu.Unlock()
		return
	}
	delete(r.mu.conns, a)
	r.mu.Unlock()
	c.cc.Close()
}

// unspecifiedHost reports whether a's host is empty or 0.0.0.0/:: (a node listening on
// every interface names no address a client elsewhere can dial).
func unspecifiedHost(a string) bool {
	host, _, _ := net.SplitHostPort(a)
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// close closes every connection and stops the watchdog; calls made afterwards fail with
// errClientClosed.
func (r *router) close() error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true // no connection is made from now on
	conns := slices.Collect(maps.Values(r.mu.conns))
	r.mu.Unlock()
	close(r.quit)
	r.cancel()
	r.wg.Wait()
	var err error
	for _, c := range conns {
		if e := c.cc.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}
