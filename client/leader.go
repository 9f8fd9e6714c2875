package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A cluster's nodes all listen for clients, but only the leader serves: the others
// answer every call with Unavailable and an ErrorInfo (reason NOT_LEADER) naming the
// leader's address. Dialed with several addresses, the client keeps its one gRPC
// connection on the leader: a leaderDialer makes every connection, to the last known
// leader or else to each known address in turn, and an interceptor that sees NOT_LEADER
// points the dialer at the named leader and drops the connection. Calls in progress
// fail with Unavailable and are retried as when a single broker restarts: publishes
// with the same client message ids (stored once), consumers re-attach.

// parseSeeds splits "h1:p1,h2:p2" into addresses, refusing empty or malformed ones.
func parseSeeds(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("broker address %q is not host:port", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

type leaderDialer struct {
	mu    sync.Mutex
	addrs []string // seeds, then leaders learned
	cur   int      // the address dialed first
	conn  net.Conn // the live connection
}

func newLeaderDialer(seeds []string) *leaderDialer {
	return &leaderDialer{addrs: seeds}
}

// dial connects to the current address, else to the others in turn.
func (d *leaderDialer) dial(ctx context.Context, _ string) (net.Conn, error) {
	d.mu.Lock()
	start, addrs := d.cur, slices.Clone(d.addrs)
	d.mu.Unlock()
	var errs []error
	for i := range addrs {
		k := (start + i) % len(addrs)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addrs[k])
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		d.mu.Lock()
		d.cur, d.conn = k, c
		d.mu.Unlock()
		return c, nil
	}
	return nil, errors.Join(errs...)
}

// follow moves the connection when err says this node is not the leader: to the leader
// it names, or, when it names none (an election, or a node cut off from the others), to
// the next known address. It reports whether it moved, and whether a leader was named.
func (d *leaderDialer) follow(err error) (moved, named bool) {
	if err == nil || status.Code(err) != codes.Unavailable {
		return false, false
	}
	st, _ := status.FromError(err)
	for _, det := range st.Details() {
		info, ok := det.(*errdetails.ErrorInfo)
		if !ok || info.Reason != "NOT_LEADER" {
			continue
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		leader := info.Metadata["leader_addr"]
		switch i := slices.Index(d.addrs, leader); {
		case leader == "":
			d.cur = (d.cur + 1) % len(d.addrs)
		case i < 0:
			d.addrs = append(d.addrs, leader)
			d.cur = len(d.addrs) - 1
		default:
			d.cur = i
		}
		if d.conn != nil {
			d.conn.Close() // gRPC reconnects through dial
			d.conn = nil
		}
		return true, leader != ""
	}
	return false, false
}

// maxRedirects bounds how often one call is sent again after NOT_LEADER.
const maxRedirects = 6

// unary sends a call again after NOT_LEADER: the node refused it without doing
// anything, so any call may be repeated.
func (d *leaderDialer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	for attempt := 1; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		moved, named := d.follow(err)
		if !moved || attempt >= maxRedirects {
			return err
		}
		if !named { // no leader yet: give the election a moment
			select {
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			case <-ctx.Done():
				return err
			}
		}
	}
}

func (d *leaderDialer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		d.follow(err)
		return nil, err
	}
	return &followingStream{ClientStream: s, d: d}, nil
}

// followingStream reports the errors of a stream to the dialer.
type followingStream struct {
	grpc.ClientStream
	d *leaderDialer
}

func (s *followingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.d.follow(err)
	return err
}

func (s *followingStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	s.d.follow(err)
	return err
}

// dialOptions connect a client dialed with several addresses through the dialer.
func (d *leaderDialer) dialOptions() []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = 50*time.Millisecond, 2*time.Second
	return []grpc.DialOption{
		grpc.WithContextDialer(d.dial),
		grpc.WithChainUnaryInterceptor(d.unary),
		grpc.WithChainStreamInterceptor(d.stream),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
	}
}
