// Package client is the Go SDK of DMQ: connect with Dial to a broker or to
// a cluster (the client follows its leader: see Client), manage topics and
// groups, publish with Client.Publish or a pipelined Producer, and consume
// with Subscribe.
//
// Errors returned by the SDK are gRPC status errors; use Code to branch on
// them. Retry contract: publishes are already retransmitted with the same
// client message ids while the broker is Unavailable, for a bounded time (the
// RetryPolicy: about 30 s with DefaultRetry; a Producer counts it per outage,
// see Producer), and the broker stores each id once within its duplicate
// window. An error that still comes back after the retries (for a Producer,
// one that wraps ErrRetriesExhausted) means the message may or may not be
// stored (Unavailable, DeadlineExceeded, Aborted): publishing it again with the
// same client message id is safe within the duplicate window; errors.Is(err,
// ErrOutcomeUnknown) tells these apart too. Other codes mean it was not stored. A Consumer re-attaches by itself while the broker is
// unavailable, and stops on errors that cannot heal (see Consumer.Err).
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/bufpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"
)

// Version is the SDK version announced to brokers.
const Version = "0.1.0"

// Client is a connection to a DMQ broker, or to a cluster of brokers. It is
// safe for concurrent use.
//
// Seeds and leader following: Dial takes one address or several
// ("h1:p1,h2:p2,h3:p3", the seeds). A cluster spreads its topics over shards,
// each served by its leader; a node refuses a call about a shard it does not
// lead with Unavailable and a NOT_LEADER ErrorInfo naming the shard, the topic
// and the shard leader's address (none during an election). Calls that name no
// topic belong to the first shard. The client keeps one gRPC connection per
// address it uses, made on first use, remembers each shard's leader and each
// topic's shard as nodes name them, and sends every call (publishes, Producer
// and Consumer streams, heartbeats, admin calls, and calls through API; a
// stream opened on API needs ForTopic) to the leader of its shard:
//   - when a node names another leader, the client switches that shard to it
//     (learning its address if it was not a seed) and sends the call again at
//     once, up to 3 times in a row;
//   - when a node names no leader, or does not answer, the client moves on to
//     the next known address; addresses it cannot connect to are skipped
//     without sending anything;
//   - a node that stops answering without closing its connections (stopped,
//     frozen, cut off) is found out within about 4 s: the client probes every
//     node it has calls in progress with, fails those calls with Unavailable
//     when a probe goes unanswered for 3 s, and avoids the node until it
//     answers again (see watchdog.go);
//   - a call that a node refused, or that could not be sent to any node, is
//     sent again after the RetryPolicy's backoff, with the same client
//     message ids for publishes, so a failover stores nothing twice. A call
//     that failed after it was sent (the node may have done it) is sent again
//     only if it is a publish; other calls return Unavailable;
//   - a Producer resends its unanswered messages with the same ids on a new
//     stream to its topic's leader, and a Consumer re-attaches there by itself.
//
// With a single address and no cluster, all of this reduces to the
// behaviour of one broker: publishes retry while it is unavailable, other
// calls fail at once.
type Client struct {
	router   *router
	api      dmqv1.BrokerClient // sends through router
	clientID string
	retry    RetryPolicy
	ids      *idSource
	presence *presence
	closed   sync.Once
}

// RetryPolicy says how often and how fast a publish is retransmitted when
// the broker is unavailable or the call timed out, and when to give up.
// Retransmissions carry the same client message id, so the broker stores each
// message once. For a Producer the budget belongs to the outage, not to each
// message: it counts from the first failure until the broker stores a message
// again, and the producer gives up on every unanswered message at once when it
// is spent (see Producer). Client.Publish retries each call up to Attempts
// sends, within its context.
type RetryPolicy struct {
	// Attempts is the total number of sends, the first included (default 20);
	// 1 turns retransmission off.
	Attempts int
	// Backoff is the wait before the first resend; it doubles up to MaxBackoff
	// (defaults 100 ms and 2 s).
	Backoff, MaxBackoff time.Duration
	// MaxElapsed bounds a Producer's outage: once this long has passed since its
	// first failure, or Attempts sends failed, whichever comes first, every
	// unanswered message fails with the last error. Zero means the sum of the
	// backoffs between Attempts sends (31.1 s for DefaultRetry). While nodes
	// answer that they know no leader yet (an election), calls and a Producer's
	// batches are sent again every 250 ms instead of backing off, and those sends
	// count against MaxElapsed only.
	MaxElapsed time.Duration
}

// DefaultRetry retransmits for about 30 seconds (31.1 s: 20 sends, the
// backoffs doubling from 100 ms to 2 s) before giving up.
var DefaultRetry = RetryPolicy{Attempts: 20, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}

// withDefaults fills in what r leaves zero.
func (r RetryPolicy) withDefaults() RetryPolicy {
	r.Attempts = max(r.Attempts, 1)
	if r.Backoff <= 0 {
		r.Backoff = DefaultRetry.Backoff
	}
	r.MaxBackoff = max(r.MaxBackoff, r.Backoff)
	if r.MaxElapsed <= 0 {
		for i := 1; i < r.Attempts; i++ {
			r.MaxElapsed += r.backoff(i)
		}
	}
	return r
}

// backoff returns the wait before send number attempts+1.
func (r RetryPolicy) backoff(attempts int) time.Duration {
	d := r.Backoff
	for i := 1; i < attempts && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxBackoff)
}

// Option configures Dial.
type Option func(*dialOptions)

type dialOptions struct {
	keepSeeds bool
	clientID  string
	retry     RetryPolicy
	token     string
	tls       *tls.Config
}

// WithRetry sets how publishes are retransmitted and when they give up
// (default DefaultRetry). Attempts 1 turns retransmission off.
func WithRetry(r RetryPolicy) Option { return func(o *dialOptions) { o.retry = r } }

// KeepSeeds keeps the addresses given to Dial, and the leaders learned, as the only
// addresses the client dials: it does not follow the cluster's members. For clients
// that reach the nodes through addresses of their own (a load balancer, NAT, a proxy
// per node), where the nodes' own addresses cannot be dialled. By default a client
// learns the members from the nodes it reaches and forgets removed ones.
func KeepSeeds() Option { return func(o *dialOptions) { o.keepSeeds = true } }

// WithClientID sets the client id used for subscriptions (default: host-pid).
func WithClientID(id string) Option { return func(o *dialOptions) { o.clientID = id } }

// Dial connects to the broker at addr (host:port), or to a cluster given several of
// its nodes ("h1:p1,h2:p2,h3:p3"): the client finds the leader, follows it when it
// changes, and tries the other addresses when one does not answer (see Client).
// Connections are made lazily and re-established as needed; Dial fails only on an
// empty or malformed address. With TLS, each node's certificate must carry the host
// of the address the client reaches it by (unless the tls.Config sets ServerName).
func Dial(addr string, opts ...Option) (*Client, error) {
	seeds, err := parseSeeds(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	o := dialOptions{retry: DefaultRetry}
	for _, f := range opts {
		f(&o)
	}
	o.retry = o.retry.withDefaults()
	if o.clientID == "" {
		host, _ := os.Hostname()
		o.clientID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	transport := insecure.NewCredentials()
	if o.tls != nil {
		transport = credentials.NewTLS(o.tls)
	}
	grpcOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20),
			grpc.ForceCodecV2(bufpool.Codec{Pool: sharedBufferPool})),
		experimental.WithBufferPool(sharedBufferPool), // buffers gRPC does not zero: see package bufpool
		// Reconnect soon after a node comes back, and give up on an address that
		// does not answer in time so that the others are tried.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: connectBackoff, MinConnectTimeout: 5 * time.Second}),
		// Notice an idle connection whose node stopped answering (see watchdog.go).
		grpc.WithKeepaliveParams(keepaliveParams),
		// Flow-control windows and socket buffers sized for pipelined
		// publishing and prefetching consumers (about 1 MB in flight).
		grpc.WithInitialWindowSize(8 << 20), grpc.WithInitialConnWindowSize(16 << 20),
		grpc.WithReadBufferSize(256 << 10), grpc.WithWriteBufferSize(256 << 10),
	}
	if o.token != "" {
		grpcOpts = append(grpcOpts, grpc.WithPerRPCCredentials(tokenCredentials(o.token)))
	}
	r := newRouter(seeds, o.retry, grpcOpts)
	r.keepSeeds = o.keepSeeds
	c := &Client{router: r, api: dmqv1.NewBrokerClient(r), clientID: o.clientID, retry: o.retry, ids: newIDSource()}
	c.presence = newPresence(c)
	r.onMove = c.presence.poke // announce the client to the new leader at once
	go c.presence.loop()
	return c, nil
}

// connectBackoff paces reconnections to a node that went away.
var connectBackoff = backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}

// Close tells the broker this client leaves and closes the connections.
// Close producers and consumers first.
func (c *Client) Close() error {
	var err error
	c.closed.Do(func() {
		c.presence.stop()
		err = c.router.close()
	})
	return err
}

// ClientID is the id this client subscribes with unless a subscription overrides it.
func (c *Client) ClientID() string { return c.clientID }

// API returns the generated gRPC client, for calls the SDK does not wrap. Its
// calls follow the leader like the SDK's own (see Client); only publishes are
// sent again after a failure that leaves their outcome unknown.
func (c *Client) API() dmqv1.BrokerClient { return c.api }

// Code returns the gRPC status code of an SDK error (codes.OK for nil).
func Code(err error) codes.Code { return status.Code(err) }

// Message is a message to publish or a delivered one.
type Message struct {
	// Set by the broker.
	ID          string
	Topic       string
	PublishedAt time.Time
	// Attempt is 1 on the first delivery to a group, 2 on the first redelivery...
	Attempt int
	// LastFailure says why the previous attempt failed (empty on attempt 1).
	LastFailure string

	Key             string
	Headers         map[string]string
	Body            []byte
	ClientMessageID string

	// DeliverAt and Delay ask for delivery no earlier than a time, or after
	// a delay counted by the broker's clock (DeliverAt wins when both are
	// set). The publish returns a delayed id ("d...") to cancel it with.
	DeliverAt time.Time
	Delay     time.Duration
}

// WithDelay sets m to be delivered after d and returns m.
func (m *Message) WithDelay(d time.Duration) *Message {
	m.Delay = d
	return m
}

// WithDeliverAt sets m to be delivered at t (a past time means now) and returns m.
func (m *Message) WithDeliverAt(t time.Time) *Message {
	m.DeliverAt = t
	return m
}

func (m *Message) outgoing() *dmqv1.OutgoingMessage {
	out := &dmqv1.OutgoingMessage{Key: m.Key, Headers: m.Headers, Body: m.Body, ClientMessageId: m.ClientMessageID}
	// Round up to whole milliseconds: never deliver early.
	if !m.DeliverAt.IsZero() {
		out.DeliverAtMs = max(unixMilliCeil(m.DeliverAt), 1)
	} else if m.Delay > 0 {
		out.DelayMs = max(ceilMs(int64(m.Delay)), 1)
	}
	return out
}

// ceilMs converts nanoseconds to milliseconds, rounding up, without overflowing
// near the largest Duration.
func ceilMs(ns int64) int64 {
	ms := ns / int64(time.Millisecond)
	if ns%int64(time.Millisecond) > 0 {
		ms++
	}
	return ms
}

// unixMilliCeil is t in Unix milliseconds, rounded up. Unlike UnixNano it holds any
// year (UnixNano overflows after 2262, which turned a far deliver-at into "now").
func unixMilliCeil(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		ms++
	}
	return ms
}

func fromProto(m *dmqv1.Message) *Message {
	return &Message{
		ID: m.Id, Topic: m.Topic, PublishedAt: time.UnixMilli(m.PublishedAtMs), Attempt: int(m.Attempt), LastFailure: m.LastFailure,
		Key: m.Key, Headers: m.Headers, Body: m.Body, ClientMessageID: m.ClientMessageId,
	}
}

// Publish stores msgs in topic and returns one result each once the broker
// has them durably. Messages without a client message id get one, and the
// call is retransmitted with the same ids while the broker is unavailable
// (see RetryPolicy), so each message is stored once. All messages are
// stored, or none.
func (c *Client) Publish(ctx context.Context, topic string, msgs ...*Message) ([]PublishResult, error) {
	c.presence.produce(topic)
	req := &dmqv1.PublishRequest{Topic: topic, ClientId: c.clientID, Messages: make([]*dmqv1.OutgoingMessage, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = m.outgoing()
		if req.Messages[i].ClientMessageId == "" {
			req.Messages[i].ClientMessageId = c.ids.next()
		}
	}
	// resendSafe: the router retransmits per the RetryPolicy, with the same ids.
	safe := &resendSafe{}
	resp, err := c.api.Publish(ctx, req, safe)
	if err != nil {
		return nil, err
	}
	rs := make([]PublishResult, len(resp.Results))
	for i, r := range resp.Results {
		if r.Error != nil {
			err := status.Error(codes.Code(r.Error.Code), r.Error.Message)
			if safe.maybeDone && !retryable(err) {
				err = outcomeUnknown(err)
			}
			return nil, err
		}
		rs[i] = PublishResult{ID: r.Id, Duplicate: r.Duplicate}
	}
	return rs, nil
}

// idSource makes client message ids: a random prefix per source and a
// counter, unique without coordination.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() *idSource {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("dmq: no randomness for client message ids: %v", err))
	}
	return &idSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (s *idSource) next() string {
	return s.prefix + strconv.FormatUint(s.n.Add(1), 36)
}

// sharedBufferPool lends gRPC the buffers of every client in the process.
var sharedBufferPool = bufpool.New()
