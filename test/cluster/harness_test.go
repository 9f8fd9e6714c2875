// Package cluster_test runs three `dmq server` processes as a cluster on loopback and
// checks what issue 10 promises: kill -9 of the leader under pipelined load, rolling
// restarts, a node that comes back and catches up, with a total-queue checker (every
// acknowledged publish is delivered; none is stored twice).
package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/replica"
	"github.com/dmqio/dmq/internal/server"
	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/grpc/codes"
)

// node is one cluster member with fixed ports, so it can be restarted in place: a
// `dmq server` process (p), or a server in the test process (s) when the test injects
// network faults.
type node struct {
	id, grpc, http, raft, dir string
	p                         *dmqtest.Process
	s                         *dmqtest.Server
	// tls, when set, is how the test reaches the node's HTTPS port.
	tls *tls.Config
}

// url is the address of path on the node's HTTP port.
func (nd *node) url(path string) string {
	if nd.tls != nil {
		return "https://" + nd.http + path
	}
	return "http://" + nd.http + path
}

// httpClient reaches the node's HTTP port (without following redirects).
func (nd *node) httpClient() *http.Client {
	// Without keep-alives: the tests make a client per request, and each idle
	// connection kept two goroutines and a socket until the test ended (566 in one).
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: nd.tls, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type testCluster struct {
	t     *testing.T
	nodes []*node
	peers string
	// extra is the flags every node gets; "{id}" in one stands for the node's id.
	extra []string
	// faults, when set, makes the nodes in-process servers sharing this link table.
	faults *transport.Faults
	// shards is the cluster's shard count (0: one); replicas how many nodes keep each
	// shard but s0 (0: every node).
	shards, replicas int
	// gone is the members taken for dead (killed, not removed): their shards are kept
	// by others (--replace-after).
	gone []string
	// configure, for in-process nodes, edits a node's configuration.
	configure func(nd *node, cfg *config.Config)
}

// startCluster starts n nodes as processes and waits for a leader that serves clients.
func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	return startClusterWith(t, n, nil, extra...)
}

// startClusterWith starts n nodes, in this process when faults is not nil.
func startClusterWith(t *testing.T, n int, faults *transport.Faults, extra ...string) *testCluster {
	t.Helper()
	return startConfigured(t, n, faults, nil, extra...)
}

// startConfigured is startClusterWith with configure editing each in-process node's
// configuration.
func startConfigured(t *testing.T, n int, faults *transport.Faults, configure func(*node, *config.Config), extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, extra: extra, faults: faults, configure: configure}
	if i := slices.Index(extra, "--shards"); i >= 0 && i+1 < len(extra) {
		c.shards, _ = strconv.Atoi(extra[i+1])
	}
	if i := slices.Index(extra, "--replicas"); i >= 0 && i+1 < len(extra) {
		c.replicas, _ = strconv.Atoi(extra[i+1])
	}
	// With TLS, the test trusts the nodes' CA (the cluster's, --cluster-ca).
	var tc *tls.Config
	if i := slices.Index(extra, "--cluster-ca"); i >= 0 && i+1 < len(extra) {
		pem, err := os.ReadFile(extra[i+1])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tc = &tls.Config{RootCAs: pool}
	}
	base := t.TempDir()
	var peers []string
	for i := 1; i <= n; i++ {
		nd := &node{
			id:   fmt.Sprintf("n%d", i),
			grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t),
			dir: filepath.Join(base, fmt.Sprintf("n%d", i)), tls: tc,
		}
		c.nodes = append(c.nodes, nd)
		peers = append(peers, nd.id+"="+nd.raft)
	}
	c.peers = strings.Join(peers, ",")
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitLeader(nil)
	return c
}

func (c *testCluster) start(nd *node) {
	c.t.Helper()
	if c.faults != nil {
		nd.s = dmqtest.Start(c.t, nd.dir, func(cfg *config.Config) {
			cfg.NodeID, cfg.Peers, cfg.ClusterListen = nd.id, c.peers, nd.raft
			cfg.Listen, cfg.HTTP = nd.grpc, nd.http
			cfg.ClusterFaults = c.faults
			if c.configure != nil {
				c.configure(nd, cfg)
			}
		})
		return
	}
	args := []string{"--node-id", nd.id, "--peers", c.peers, "--cluster-listen", nd.raft, "--listen", nd.grpc, "--http", nd.http}
	for _, a := range c.extra {
		args = append(args, strings.ReplaceAll(a, "{id}", nd.id)) // a node's own file
	}
	nd.p = dmqtest.StartProcess(c.t, nd.dir, args...)
}

// seeds is every node's gRPC address, for client.Dial.
func (c *testCluster) seeds() string {
	var s []string
	for _, nd := range c.nodes {
		s = append(s, nd.grpc)
	}
	return strings.Join(s, ",")
}

// status asks one node for its view of the cluster.
func status(nd *node) (server.Status, error) {
	var st server.Status
	hc := nd.httpClient()
	hc.Timeout = time.Second
	resp, err := hc.Get(nd.url("/api/v1/cluster"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitLeader waits until a node other than not serves as leader, and returns it.
func (c *testCluster) waitLeader(not *node) *node {
	c.t.Helper()
	var leader *node
	dmqtest.Eventually(c.t, 15*time.Second, "a node serving as leader", func() bool {
		for _, nd := range c.nodes {
			if nd == not {
				continue
			}
			if st, err := status(nd); err == nil && st.Role == "leader" {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

// waitCaughtUp waits until every node has applied what the leader of each shard it
// keeps committed.
func (c *testCluster) waitCaughtUp() {
	c.t.Helper()
	c.waitLeader(nil)
	shards := max(c.shards, 1)
	commits := map[string]uint64{}
	dmqtest.Eventually(c.t, 30*time.Second, "a leader for every shard", func() bool {
		clear(commits)
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				continue
			}
			for _, gs := range st.Groups {
				if gs.Role == "leader" {
					commits[gs.Name] = max(gs.CommitIndex, 1)
				}
			}
		}
		return len(commits) == shards
	})
	dmqtest.Eventually(c.t, 30*time.Second, fmt.Sprintf("every node applied indexes %v", commits), func() bool {
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				return false
			}
			for _, gs := range st.Groups {
				if gs.AppliedIndex < commits[gs.Name] {
					return false
				}
			}
		}
		return true
	})
}

// keepers is the nodes that keep the shard holding topic: every node, or those of its
// placement over the cluster's nodes.
func (c *testCluster) keepers(topic string) []*node {
	i := shard.Of(topic, max(c.shards, 1))
	if c.replicas == 0 || i == 0 {
		return c.nodes
	}
	var ids []string
	for _, nd := range c.nodes {
		ids = append(ids, nd.id)
	}
	placed := shard.Placement(i, ids, c.replicas)
	return slices.DeleteFunc(slices.Clone(c.nodes), func(nd *node) bool { return !slices.Contains(placed, nd.id) })
}

// shardDir is where a node keeps the shard holding topic, in a cluster of c.shards.
func (c *testCluster) shardDir(nd *node, topic string) string {
	if i := shard.Of(topic, max(c.shards, 1)); i > 0 {
		return filepath.Join(nd.dir, "shards", shard.Name(i))
	}
	return nd.dir
}

func (c *testCluster) dial(opts ...client.Option) *client.Client {
	c.t.Helper()
	opts = append([]client.Option{client.WithRetry(client.RetryPolicy{Attempts: 400, Backoff: 20 * time.Millisecond, MaxBackoff: 250 * time.Millisecond})}, opts...)
	cl, err := client.Dial(c.seeds(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// stop stops a node cleanly.
func (c *testCluster) stop(nd *node) {
	c.t.Helper()
	if nd.s != nil {
		nd.s.Stop(c.t)
		return
	}
	nd.p.Stop(c.t)
}

// stopAll stops every node cleanly.
func (c *testCluster) stopAll() {
	c.t.Helper()
	for _, nd := range c.nodes {
		c.stop(nd)
	}
}

// checkReplicas waits until every node applied what each shard's leader committed, stops
// them, and checks their copies of each topic's log are identical and hold want records.
func (c *testCluster) checkReplicas(want uint64, topics ...string) {
	c.t.Helper()
	c.waitCaughtUp()
	c.stopAll()
	for _, topic := range topics {
		c.checkReplicasEqual(topic, want)
	}
}

// checkReplicasEqual opens each stopped node's store and compares its topic log with the
// first's: same records at the same offsets, want of them.
func (c *testCluster) checkReplicasEqual(topic string, want uint64) {
	c.t.Helper()
	var first [][]byte
	keepers := c.keepers(topic)
	for i, nd := range keepers {
		dir := c.shardDir(nd, topic)
		if _, err := os.Stat(filepath.Join(dir, "topics", topic)); err != nil {
			c.t.Fatalf("%s has no log of %s (%v); its notable log lines:\n%s", nd.id, topic, err, nd.notableLogs())
		}
		s, err := replica.Open(replica.Options{DataDir: dir})
		if err != nil {
			c.t.Fatalf("%s: %v", nd.id, err)
		}
		l, err := s.OpenLog(topic, replica.Options{}.Log)
		if err != nil {
			s.Close()
			c.t.Fatalf("%s: %v", nd.id, err)
		}
		if l.Next()-l.First() != want {
			s.Close()
			c.t.Fatalf("%s holds %d records of %s (offsets %d to %d), want %d; its notable log lines:\n%s",
				nd.id, l.Next()-l.First(), topic, l.First(), l.Next(), want, nd.notableLogs())
		}
		var recs [][]byte
		for off := l.First(); off < l.Next(); off++ {
			p, err := l.Read(off)
			if err != nil {
				s.Close()
				c.t.Fatalf("%s: read %d: %v", nd.id, off, err)
			}
			recs = append(recs, p)
		}
		s.Close()
		if i == 0 {
			first = recs
			continue
		}
		for k := range recs {
			if string(recs[k]) != string(first[k]) {
				c.t.Fatalf("%s and %s differ at record %d", keepers[0].id, nd.id, k)
			}
		}
	}
}

// notableLogs returns the warnings, errors and replica lines the node printed.
func (nd *node) notableLogs() string {
	if nd.p == nil {
		return "(in-process node)"
	}
	var out []string
	for _, line := range strings.Split(nd.p.Logs(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "replica") || strings.Contains(line, "cluster:") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// ledger is the total-queue checker: what was acknowledged to producers and what
// consumers received.
type ledger struct {
	mu        sync.Mutex
	acked     map[string]string // body → message id
	delivered map[string]int    // body → deliveries
	failed    []string
	refused   map[string]bool // bodies answered "not stored"
	// ackTimes and deliverTimes are when each ack and delivery came, in order: how
	// long publishing or consuming stalled around a fault.
	ackTimes, deliverTimes []time.Time
}

func newLedger() *ledger {
	return &ledger{acked: map[string]string{}, delivered: map[string]int{}, refused: map[string]bool{}}
}

func (l *ledger) ack(body, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[body] = id
	l.ackTimes = append(l.ackTimes, time.Now())
}

func (l *ledger) fail(body string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, fmt.Sprintf("%s: %v", body, err))
	switch client.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled:
		// May or may not be stored (ErrOutcomeUnknown, ErrRetriesExhausted).
	default:
		l.refused[body] = true
	}
}

// unknown is how many failed publishes may or may not be stored.
func (l *ledger) unknown() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failed) - len(l.refused)
}

// checkRefused fails if a publish answered "not stored" was delivered.
func (l *ledger) checkRefused(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for body := range l.refused {
		if l.delivered[body] > 0 {
			t.Fatalf("%s was answered as not stored, and was delivered", body)
		}
	}
}

// publish sends body through prod and records its outcome when it comes; wg counts it
// until then. An error means it was not sent (nothing is recorded).
func (l *ledger) publish(prod *client.Producer, body string, wg *sync.WaitGroup) error {
	wg.Add(1)
	err := prod.PublishAsync(context.Background(), &client.Message{Body: []byte(body)}, func(r client.PublishResult, err error) {
		defer wg.Done()
		if err != nil {
			l.fail(body, err)
			return
		}
		l.ack(body, r.ID)
	})
	if err != nil {
		wg.Done()
	}
	return err
}

func (l *ledger) deliver(body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delivered[body]++
	l.deliverTimes = append(l.deliverTimes, time.Now())
}

// gap is the longest time without an event of times (sorted) that ends after from,
// up to until: how long publishing (or consuming) stopped around a fault made at from.
// The wait from the last event before from to the first after it counts, and so does
// the wait from the last event to until.
func gap(times []time.Time, from, until time.Time) time.Duration {
	var longest time.Duration
	prev := from
	for _, at := range times {
		if at.After(until) {
			break
		}
		if at.After(from) {
			longest = max(longest, at.Sub(prev))
		}
		prev = at
	}
	return max(longest, until.Sub(prev))
}

// ackGap is the longest time without an ack between from and until (see gap).
func (l *ledger) ackGap(from, until time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return gap(l.ackTimes, from, until)
}

// deliverGap is the longest time without a delivery between from and until (see gap).
func (l *ledger) deliverGap(from, until time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return gap(l.deliverTimes, from, until)
}

func (l *ledger) counts() (acked, delivered, missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for body := range l.acked {
		if l.delivered[body] == 0 {
			missing++
		}
	}
	return len(l.acked), len(l.delivered), missing
}

// checkAcked fails unless every publish was acknowledged.
func (l *ledger) checkAcked(t *testing.T, published int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkAckedLocked(t, published)
}

func (l *ledger) checkAckedLocked(t *testing.T, published int) {
	t.Helper()
	if len(l.failed) > 0 {
		t.Fatalf("%d publishes gave up, first: %s", len(l.failed), l.failed[0])
	}
	if len(l.acked) != published {
		t.Fatalf("%d of %d publishes acknowledged", len(l.acked), published)
	}
}

// check fails unless every acknowledged publish was delivered; it returns how many
// deliveries were repeats (allowed by at-least-once after a failover).
func (l *ledger) check(t *testing.T, published int) (redelivered int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkAckedLocked(t, published)
	for body := range l.acked {
		if l.delivered[body] == 0 {
			t.Fatalf("acknowledged %s was never delivered", body)
		}
		redelivered += l.delivered[body] - 1
	}
	return redelivered
}

func createTopic(t *testing.T, cl *client.Client, topic string, groups ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, client.TopicSpec{Name: topic, Owner: "cluster-test"}); err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if _, err := cl.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: g, FromEarliest: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitPeersKnown waits until every node knows every node's client addresses and each
// shard's leader sees every follower reachable and caught up (lag 0), as the nodes tell
// each other over the cluster port.
func (c *testCluster) waitPeersKnown() {
	c.t.Helper()
	var last string
	dmqtest.Eventually(c.t, 20*time.Second, "every node known to every node, every follower caught up", func() bool {
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				last = err.Error()
				return false
			}
			if len(st.Nodes) != len(c.nodes) {
				last = fmt.Sprintf("%s knows nodes %+v", nd.id, st.Nodes)
				return false
			}
			for _, n := range st.Nodes {
				if n.GRPC == "" || n.HTTP == "" {
					last = fmt.Sprintf("%s knows no addresses of %s", nd.id, n.ID)
					return false
				}
			}
			for _, g := range st.Groups {
				if g.Role != "leader" {
					continue
				}
				if len(g.Replicas) != len(c.nodes) {
					last = fmt.Sprintf("%s leads %s with replicas %+v", nd.id, g.Name, g.Replicas)
					return false
				}
				for _, r := range g.Replicas {
					if !r.Reachable || r.Lag != 0 {
						last = fmt.Sprintf("%s leads %s and sees %+v", nd.id, g.Name, r)
						return false
					}
				}
			}
		}
		return true
	})
	c.t.Logf("peers known; last wait: %s", last)
}
