package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/cluster/transport"
)

// testGroups are the groups every test node hosts: the metadata group and two shards.
var testGroups = []string{"meta", "s0", "s1"}

// testLogger sends logs to t.Log (shown only when the test fails or with -v) and stops
// before the test ends, since raft's goroutines may log during shutdown. Level from
// DMQ_CLUSTER_LOG (debug, info, warn, error; default info). If record is not nil it gets
// every message, for tests that assert on logs.
func testLogger(t *testing.T, record func(string)) *slog.Logger {
	t.Helper()
	level := slog.LevelInfo
	if s := os.Getenv("DMQ_CLUSTER_LOG"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			t.Fatalf("DMQ_CLUSTER_LOG=%q: %v", s, err)
		}
	}
	h := &tHandler{t: t, level: level, record: record, mu: &sync.RWMutex{}, done: new(bool)}
	t.Cleanup(func() {
		h.mu.Lock()
		*h.done = true
		h.mu.Unlock()
	})
	return slog.New(h)
}

type tHandler struct {
	t      *testing.T
	level  slog.Level
	record func(string)
	attrs  string
	mu     *sync.RWMutex
	done   *bool
}

func (h *tHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *tHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s", r.Level, r.Message, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.RLock()
	defer h.mu.RUnlock()
	if *h.done {
		return nil
	}
	if h.record != nil {
		h.record(b.String())
	}
	h.t.Log(b.String())
	return nil
}

func (h *tHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	c.attrs = b.String()
	return &c
}

func (h *tHandler) WithGroup(string) slog.Handler { return h }

// testCluster is N in-process nodes on real loopback sockets and temp dirs, sharing a fault
// table, each hosting testGroups.
type testCluster struct {
	t      *testing.T
	id     string
	faults *transport.Faults
	peers  []Peer
	tune   func(*Config)
	log    *slog.Logger
	// base holds every node's data dir. It is created before the cleanup that stops the
	// nodes is registered, so it is removed after they stopped: a node still writing a
	// snapshot would otherwise make the directory's removal fail.
	base string

	mu    sync.Mutex
	nodes map[string]*testNode
}

type testNode struct {
	id   string
	addr string
	dir  string
	node *Node
	fsms map[string]*listFSM
}

// newTestCluster starts n nodes n1..nN that bootstrap together. tune, if not nil, adjusts
// every node's Config.
func newTestCluster(t *testing.T, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, id: "test-cluster", faults: transport.NewFaults(), tune: tune, nodes: make(map[string]*testNode), base: t.TempDir()}
	c.log = testLogger(t, nil)
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen on 127.0.0.1:0: %v", err)
		}
		lns[i] = ln
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()})
	}
	t.Cleanup(c.shutdownAll)
	for i, p := range c.peers {
		tn := &testNode{id: p.ID, addr: p.Addr, dir: c.nodeDir(p.ID)}
		c.nodes[p.ID] = tn
		if err := c.startNode(tn, lns[i], c.peers, false); err != nil {
			t.Fatalf("start %s: %v", p.ID, err)
		}
	}
	return c
}

func (c *testCluster) config(tn *testNode, ln net.Listener, peers []Peer, join bool) Config {
	cfg := Config{
		ClusterID: c.id,
		NodeID:    tn.id,
		DataDir:   tn.dir,
		Listener:  ln,
		Peers:     peers,
		Join:      join,
		Logger:    c.log,
		Faults:    c.faults,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

// startNode starts tn on ln (nil: listen again on tn.addr) with fresh FSMs.
func (c *testCluster) startNode(tn *testNode, ln net.Listener, peers []Peer, join bool) error {
	if ln == nil {
		ln = c.relisten(tn.addr)
	}
	n, err := New(c.config(tn, ln, peers, join))
	if err != nil {
		ln.Close()
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	fsms := make(map[string]*listFSM)
	for _, g := range testGroups {
		f := &listFSM{}
		if _, err := n.OpenGroup(GroupConfig{Name: g, FSM: f}); err != nil {
			n.Shutdown(context.Background())
			return err
		}
		fsms[g] = f
	}
	c.mu.Lock()
	tn.node, tn.fsms = n, fsms
	c.mu.Unlock()
	return nil
}

// relisten binds addr again, retrying while the old socket is released.
func (c *testCluster) relisten(addr string) net.Listener {
	c.t.Helper()
	var ln net.Listener
	waitFor(c.t, 5*time.Second, "listen again on "+addr, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln
}

// nodeDir creates the data dir of node id under c.base.
func (c *testCluster) nodeDir(id string) string {
	dir := filepath.Join(c.base, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		c.t.Fatalf("data dir of %s: %v", id, err)
	}
	return dir
}

// addNode starts a node that joins (does not bootstrap).
func (c *testCluster) addNode(id string) *testNode {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	tn := &testNode{id: id, addr: ln.Addr().String(), dir: c.nodeDir(id)}
	c.mu.Lock()
	c.nodes[id] = tn
	c.mu.Unlock()
	if err := c.startNode(tn, ln, nil, true); err != nil {
		c.t.Fatalf("start joining node %s: %v", id, err)
	}
	return tn
}

func (c *testCluster) node(id string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	tn := c.nodes[id]
	if tn == nil {
		c.t.Fatalf("no node %s", id)
	}
	return tn
}

// stop shuts a node down; its data dir stays for restart.
func (c *testCluster) stop(id string) {
	c.t.Helper()
	tn := c.node(id)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tn.node.Shutdown(ctx); err != nil {
		c.t.Fatalf("shutdown %s: %v", id, err)
	}
	c.mu.Lock()
	tn.node = nil
	c.mu.Unlock()
}

func (c *testCluster) restart(id string) {
	c.t.Helper()
	tn := c.node(id)
	if err := c.startNode(tn, nil, c.peers, false); err != nil {
		c.t.Fatalf("restart %s: %v", id, err)
	}
}

func (c *testCluster) shutdownAll() {
	c.mu.Lock()
	var live []*Node
	for _, tn := range c.nodes {
		if tn.node != nil {
			live = append(live, tn.node)
			tn.node = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := n.Shutdown(ctx); err != nil {
				c.t.Errorf("shutdown %s: %v", n.ID(), err)
			}
		}()
	}
	wg.Wait()
}

// live returns the running nodes among ids (all nodes when ids is empty), sorted by id.
func (c *testCluster) live(ids ...string) []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for id, tn := range c.nodes {
		if tn.node != nil && (len(ids) == 0 || slices.Contains(ids, id)) {
			out = append(out, tn)
		}
	}
	slices.SortFunc(out, func(a, b *testNode) int { return strings.Compare(a.id, b.id) })
	return out
}

func (c *testCluster) ids() []string {
	var ids []string
	for _, tn := range c.live() {
		ids = append(ids, tn.id)
	}
	return ids
}

// waitLeader waits until exactly one of the given running nodes (all when empty) leads
// group and the others among them that are members name it, and returns it.
func (c *testCluster) waitLeader(group string, among ...string) *testNode {
	c.t.Helper()
	var leader *testNode
	waitFor(c.t, 10*time.Second, "a leader for group "+group, func() error {
		leader = nil
		nodes := c.live(among...)
		for _, tn := range nodes {
			if g := tn.node.Group(group); g != nil && g.IsLeader() {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.id, tn.id)
				}
				leader = tn
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, tn := range nodes {
			if l := tn.node.Group(group).Leader(); l.ID != leader.id && tn.node.Group(group).Stats().State != "Shutdown" {
				return fmt.Errorf("%s leads but %s names %q", leader.id, tn.id, l.ID)
			}
		}
		return nil
	})
	return leader
}

// apply applies data to group through whichever node leads it, waiting for a leader. When
// the outcome is unknown (leadership lost under load), it asks the next leader, after a
// Barrier, whether the entry is in, and sends it again only if not: so it is applied once.
func (c *testCluster) apply(group string, data string) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, "apply "+data+" to "+group, func() error {
		var last error = errors.New("no leader")
		for _, tn := range c.live() {
			g := tn.node.Group(group)
			if g == nil || !g.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := g.Barrier(ctx); err != nil {
				last = err
				continue
			}
			if got, _ := tn.fsms[group].state(); slices.Contains(got, data) {
				return nil // an earlier try with an unknown outcome got in
			}
			_, err := g.Apply(ctx, []byte(data))
			if err == nil {
				return nil
			}
			last = err
		}
		return last
	})
}

// waitConverged waits until group's FSM on each of the given running nodes (all when
// empty) holds exactly want, in order, and returns the common checksum.
func (c *testCluster) waitConverged(group string, want []string, among ...string) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, fmt.Sprintf("group %s to converge on %d entries", group, len(want)), func() error {
		for _, tn := range c.live(among...) {
			got, _ := tn.fsms[group].state()
			if !slices.Equal(got, want) {
				return fmt.Errorf("node %s has %d entries (last %q), want %d (last %q)", tn.id, len(got), last(got), len(want), last(want))
			}
		}
		return nil
	})
	var sum uint32
	for i, tn := range c.live(among...) {
		_, s := tn.fsms[group].state()
		if i > 0 && s != sum {
			c.t.Fatalf("group %s: node %s checksum %08x differs from %08x", group, tn.id, s, sum)
		}
		sum = s
	}
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func entries(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}
