package client

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// A node that stops answering without closing its connections (a process stopped with
// SIGSTOP or stuck in the kernel, a frozen virtual machine, a network that drops
// packets) fails no call: its streams wait, its unary calls wait, the kernel may even
// accept new connections for it. The rest of the cluster elects a new leader within
// seconds, and the client must notice as fast, or it waits for the node's return (issue
// 20: producers and consumers stayed 60 s on a leader stopped for 60 s).
//
// The router's watchdog asks every node it has calls or streams in progress with (and
// every suspect, below) whether it still answers: the standard health check, every
// probeInterval, with probeTimeout to answer. Any answer will do, even an error (a
// server without the health service, a follower's NOT_LEADER); a connection that is
// down fails the probe at once and is gRPC's to repair. A node that does not answer in
// time stalled:
//
//   - its connection is closed, so every call and stream on it fails now, with
//     Unavailable saying the node stopped answering (see conn.explain): the router and
//     the Producer and Consumer above it treat that like a node that went away, and
//     move to the next node, which names the new leader; the Producer's retry budget
//     counts the outage;
//   - the node is a suspect: the router sends nothing there while another node is
//     known (see router.pick), even when a follower that did not yet notice the
//     election names it as leader, and probes it on a new connection until it answers,
//     for suspectFor at most.
//
// gRPC keepalives (keepaliveParams) stand behind the watchdog for idle connections:
// gRPC pings no more often than every 10 s, too slow to follow a failover by
// themselves. Servers must allow those pings (internal/server's keepalive enforcement
// policy), else they close the connection with "too_many_pings".
//
// A Producer also counts a stream whose batches get no answer for answerTimeout as
// failed (producer.go): a node that answers probes but not publishes.

const (
	// probeInterval is how often the watchdog asks a busy or suspect node.
	probeInterval = time.Second
	// probeTimeout is how long a node has to answer a probe. A node under load answers
	// a health check within milliseconds (gRPC serves it on its own goroutine); the
	// margin is for a machine short of CPU. A node taken for stalled wrongly costs the
	// calls in progress on it one resend (with the same ids for publishes) and a
	// re-attach for consumers, no message.
	probeTimeout = 3 * time.Second
	// suspectFor bounds how long a node that stopped answering is avoided and probed
	// without an answer. After it, a node that still does not answer is found out again
	// by the probes of the calls sent to it.
	suspectFor = 30 * time.Second
)

// keepaliveParams are the client's gRPC keepalives: a connection that received
// nothing for Time is pinged, and closed if the ping is not answered within Timeout.
// gRPC refuses a Time under 10 s.
var keepaliveParams = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}

// conn is the router's connection to one address.
type conn struct {
	addr string
	cc   *grpc.ClientConn
	// busy counts the calls and streams in progress on cc: the watchdog probes it while
	// it is positive.
	busy atomic.Int32
	// probing is set while a probe of cc is under way.
	probing atomic.Bool
	// stalled is set once the watchdog closed cc because its node stopped answering:
	// what its calls and streams fail with then is Unavailable (see explain).
	stalled atomic.Bool
}

// explain returns the error of a call or stream on c that failed with err: Unavailable
// when the watchdog closed c (gRPC says Canceled, as if the caller had given up),
// unless ctx, the caller's, ended. io.EOF, a stream's "ask RecvMsg why", is left alone.
func (c *conn) explain(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, io.EOF) || !c.stalled.Load() || ctx.Err() != nil || status.Code(err) == codes.Unavailable {
		return err
	}
	return status.Errorf(codes.Unavailable, "dmq: %s stopped answering (no answer to a probe within %v)", c.addr, probeTimeout)
}

// watch probes the nodes the router has calls in progress with, and its suspects, until
// the router closes. It wakes every probeInterval.
func (r *router) watch() {
	defer r.wg.Done()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-tick.C:
		}
		r.mu.Lock()
		now := time.Now()
		for addr, since := range r.mu.suspects {
			if now.Sub(since) >= suspectFor {
				delete(r.mu.suspects, addr)
			}
		}
		var due []*conn
		for addr, c := range r.mu.conns {
			if _, suspect := r.mu.suspects[addr]; (suspect || c.busy.Load() > 0) && c.probing.CompareAndSwap(false, true) {
				due = append(due, c)
			}
		}
		r.mu.Unlock()
		for _, c := range due {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.probing.Store(false)
				r.probe(c)
			}()
		}
	}
}

// probe asks c's node whether it answers, and acts on the outcome: a suspect that
// answered is cleared, a node that did not answer in time stalled.
func (r *router) probe(c *conn) {
	ctx, cancel := context.WithTimeout(r.ctx, probeTimeout)
	defer cancel()
	_, err := healthpb.NewHealthClient(c.cc).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case r.ctx.Err() != nil:
	case status.Code(err) == codes.DeadlineExceeded:
		r.stalled(c)
	case probeAnswered(err):
		r.mu.Lock()
		if r.mu.conns[c.addr] == c {
			delete(r.mu.suspects, c.addr)
		}
		r.mu.Unlock()
	}
}

// probeAnswered reports whether a probe that returned err reached the node's server.
func probeAnswered(err error) bool {
	switch status.Code(err) {
	case codes.OK:
		return true
	case codes.Unavailable:
		_, notLeader := leaderHint(err) // a follower's answer
		return notLeader
	case codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true // Unimplemented (no health service), NotFound...: the server answered
}

// stalled handles a connection whose node did not answer a probe in time: the node
// becomes a suspect, routes move on, and the connection is replaced by a new one (made
// now: the watchdog probes it) and closed, failing its calls and streams.
func (r *router) stalled(c *conn) {
	r.mu.Lock()
	if r.mu.closed || r.mu.conns[c.addr] != c {
		r.mu.Unlock()
		return
	}
	if r.suspectLocked(c.addr) && c.busy.Load() == 0 {
		// Still no answer, and nothing waits on it: keep probing this connection
		// rather than open a new one every time.
		r.mu.Unlock()
		return
	}
	if !r.suspectLocked(c.addr) {
		r.mu.suspects[c.addr] = time.Now()
	}
	delete(r.mu.conns, c.addr)
	r.connLocked(c.addr) // error only if the address does not parse: it did before
	r.mu.Unlock()
	c.stalled.Store(true)
	r.leave(c.addr)
	c.cc.Close()
}

// suspectLocked reports whether addr's node stopped answering and did not answer since.
func (r *router) suspectLocked(addr string) bool {
	_, ok := r.mu.suspects[addr]
	return ok
}
