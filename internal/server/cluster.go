package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/bufpool"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/replica"
	"github.com/dmqio/dmq/internal/seglog"
)

// A cluster node replicates the broker's store (package replica) in one Raft group, the
// shard "s0", and serves clients while it leads it: on becoming leader it waits until
// every committed entry is applied, records its client addresses in the replicated
// metadata and opens a broker on the replica; on losing leadership it closes that
// broker. Meanwhile its ports answer every gRPC call with Unavailable naming the leader
// (the SDK follows it) and redirect HTTP requests to the leader's console and API.

// shardGroup is the Raft group of the node's one shard.
const shardGroup = "s0"

// clusterNode is the cluster side of a Server.
type clusterNode struct {
	s     *Server
	store *replica.Store
	node  *cluster.Node
	group *cluster.Group

	// target receives the gRPC connections the listener accepts: the leader's broker
	// or the redirecting server of a follower.
	target atomic.Pointer[handoff]
	// http is the current HTTP handler.
	http atomic.Pointer[http.Handler]

	quit chan struct{}
	done chan struct{}

	// leaderChanges counts the leader changes this node saw (elections that
	// produced a leader, and leaderless spells).
	leaderChanges atomic.Uint64

	mu struct {
		sync.Mutex
		leading  *stack       // while this node leads
		follower *grpc.Server // while it does not
		since    time.Time    // when this node last became leader
	}
}

func (s *Server) startCluster() error {
	peers, err := cluster.ParsePeers(s.cfg.Peers)
	if err != nil {
		return err
	}
	store, err := replica.Open(replica.Options{
		DataDir: s.cfg.DataDir,
		Log: seglog.Options{
			SegmentBytes:   s.cfg.SegmentBytes,
			MaxRecordBytes: s.cfg.MaxBodyBytes + 1<<20,
		},
		Logger: s.logger,
	})
	if err != nil {
		return err
	}
	node, err := cluster.New(cluster.Config{
		ClusterID:  s.cfg.ClusterID,
		NodeID:     s.cfg.NodeID,
		DataDir:    s.cfg.DataDir,
		ListenAddr: s.cfg.ClusterListen,
		Peers:      peers,
		Join:       s.cfg.Join,
		Faults:     s.cfg.ClusterFaults,
		// Zero values are the package's defaults.
		SnapshotThreshold: uint64(s.cfg.SnapshotEntries),
		SnapshotInterval:  s.cfg.SnapshotInterval,
		TrailingLogs:      uint64(s.cfg.TrailingEntries),
		// The Raft log's segments are the size of the topic logs'.
		LogSegmentBytes: int(s.cfg.SegmentBytes),
		Logger:          s.logger,
	})
	if err == nil {
		err = node.Start()
	}
	if err != nil {
		store.Close()
		return err
	}
	if err := adoptData(node, store, peers); err != nil {
		node.Shutdown(context.Background())
		store.Close()
		return err
	}
	group, err := node.OpenGroup(cluster.GroupConfig{Name: shardGroup, FSM: store, DurableFSM: true})
	if err != nil {
		node.Shutdown(context.Background())
		store.Close()
		return err
	}
	store.Attach(group)
	c := &clusterNode{s: s, store: store, node: node, group: group, quit: make(chan struct{}), done: make(chan struct{})}
	s.node = c
	c.follow()
	s.goFunc(c.acceptLoop)
	go c.roleLoop()
	return nil
}

// adoptData prepares a data directory that holds a broker's data but no Raft state yet:
// a single node becoming the first node of a cluster. Its replication log starts from 1,
// so the applied index of an earlier one is forgotten. Several nodes bootstrapping
// together could elect one without the data, whose log would then be applied over it:
// that is refused, with the way to do it.
func adoptData(node *cluster.Node, store *replica.Store, peers []cluster.Peer) error {
	has, err := node.HasGroupState(shardGroup)
	if err != nil || has {
		return err
	}
	empty, err := store.Empty()
	if err != nil || empty {
		return err
	}
	if len(peers) > 1 {
		return errors.New("this data directory holds a broker's topics and settings but no cluster state: " +
			"start it alone as the cluster's first node (--node-id without --peers), then start the others with --join " +
			"and add them with dmq cluster add-node; they copy its data")
	}
	if err := store.Meta().ResetReplication(); err != nil {
		return err
	}
	return store.MarkSeedNeeded()
}

// handoff is a listener fed by the node's accept loop.
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// acceptLoop hands every gRPC connection to the current target.
func (c *clusterNode) acceptLoop() {
	for {
		conn, err := c.s.grpcLis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		h := c.target.Load()
		select {
		case h.conns <- conn:
		case <-h.done:
			conn.Close() // the role is changing; the client reconnects
		}
	}
}

// serve starts g on a new handoff and makes it the target.
func (c *clusterNode) serve(g *grpc.Server) {
	h := newHandoff(c.s.grpcLis.Addr())
	go g.Serve(h)
	if old := c.target.Swap(h); old != nil {
		old.Close()
	}
}

// roleLoop follows leadership changes (and checks every second, in case one was
// missed or a promotion failed).
func (c *clusterNode) roleLoop() {
	defer close(c.done)
	changes := c.group.LeaderChanges()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			c.leaderChanges.Add(1)
		case <-tick.C:
		}
		leading := c.group.IsLeader()
		c.mu.Lock()
		serving := c.mu.leading != nil
		c.mu.Unlock()
		switch {
		case leading && !serving:
			c.lead()
		case !leading && serving:
			c.follow()
		}
	}
}

// lead opens the broker on the replica once it holds every committed entry.
func (c *clusterNode) lead() {
	start := time.Now()
	if err := c.store.Broken(); err != nil {
		// Elected with a replica that differs from the others: hand leadership on.
		c.s.logger.Error("cluster: elected, but this node's replica is broken; handing leadership to another node", "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.group.TransferLeadership(ctx, ""); err != nil {
			c.s.logger.Warn("cluster: leadership transfer failed", "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.group.Barrier(ctx); err != nil {
		c.s.logger.Warn("cluster: elected, but the log could not be applied yet; will retry", "err", err)
		return
	}
	if c.store.SeedNeeded() {
		err := c.store.Seed(func(size int64, r io.Reader) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			return c.group.Restore(ctx, size, r)
		})
		if err != nil {
			c.s.logger.Error("cluster: could not make this node's data the cluster's snapshot; will retry", "err", err)
			return
		}
	}
	err := c.store.Meta().PutNode(meta.Node{ID: c.s.cfg.NodeID, GRPC: c.s.GRPCAddr(), HTTP: c.s.HTTPAddr(), UpdatedAtMs: time.Now().UnixMilli()})
	if err != nil {
		c.s.logger.Warn("cluster: elected, but could not record this node's addresses; will retry", "err", err)
		return
	}
	st, err := c.s.openStack(c.store.Storage(), c.leaderRoutes)
	if err != nil {
		c.s.logger.Error("cluster: elected, but the broker did not open; will retry", "err", err)
		return
	}
	c.mu.Lock()
	old := c.mu.follower
	c.mu.leading, c.mu.follower, c.mu.since = st, nil, time.Now()
	c.mu.Unlock()
	c.serve(st.grpc)
	var h http.Handler = st.http
	c.http.Store(&h)
	if old != nil {
		old.Stop()
	}
	c.s.logger.Info("cluster: this node leads and serves clients", "node", c.s.cfg.NodeID, "took", time.Since(start).Round(time.Millisecond))
}

// follow closes the broker (if this node led) and redirects clients to the leader.
func (c *clusterNode) follow() {
	g := grpc.NewServer(append(c.s.grpcOptions(bufpool.New()), grpc.UnknownServiceHandler(c.refuse))...)
	hs := health.NewServer()
	hs.SetServingStatus("dmq.v1.Broker", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	c.mu.Lock()
	st := c.mu.leading
	c.mu.leading, c.mu.follower = nil, g
	c.mu.Unlock()
	c.serve(g)
	mux := http.NewServeMux()
	c.routes(mux)
	mux.HandleFunc("GET /healthz", c.handleFollowerHealth)
	mux.HandleFunc("GET /readyz", c.handleFollowerHealth)
	mux.HandleFunc("/", c.redirect)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var h http.Handler = mux
	c.http.Store(&h)
	if st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st.grpc.Stop() // streams end now: clients re-attach to the new leader
		st.stopServing(ctx)
		cancel()
		if err := st.b.Close(); err != nil {
			c.s.logger.Warn("cluster: closing the broker after losing leadership", "err", err)
		}
		c.s.logger.Info("cluster: this node no longer leads; clients are sent to the leader", "leader", c.group.Leader().ID)
	}
}

// leaderAddrs returns the leader's id and client addresses, as far as this node knows.
func (c *clusterNode) leaderAddrs() meta.Node {
	l := c.group.Leader()
	if l.ID == "" {
		return meta.Node{}
	}
	n, err := c.store.Meta().GetNode(l.ID)
	if err != nil {
		return meta.Node{ID: l.ID}
	}
	return n
}

// refuse answers every gRPC call on a follower: Unavailable, naming the leader.
func (c *clusterNode) refuse(any, grpc.ServerStream) error {
	return notLeaderError(c.s.cfg.NodeID, c.leaderAddrs())
}

// notLeaderError is the status a follower answers with; the SDK reads the ErrorInfo.
func notLeaderError(self string, leader meta.Node) error {
	msg := fmt.Sprintf("dmq: node %s is not the leader; no leader is known yet (an election is in progress)", self)
	if leader.GRPC != "" {
		msg = fmt.Sprintf("dmq: node %s is not the leader; the leader is %s at %s", self, leader.ID, leader.GRPC)
	}
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{
		Reason: "NOT_LEADER",
		Domain: "dmq.io",
		Metadata: map[string]string{
			"leader_id":   leader.ID,
			"leader_addr": leader.GRPC,
		},
	})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// broker returns the broker while this node leads.
func (c *clusterNode) broker() *broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.leading == nil {
		return nil
	}
	return c.mu.leading.b
}

// shutdown stops serving, closes the broker if it runs, then Raft and the replica.
func (c *clusterNode) shutdown(ctx context.Context) error {
	close(c.quit)
	<-c.done
	c.s.grpcLis.Close()
	c.mu.Lock()
	st, f := c.mu.leading, c.mu.follower
	c.mu.leading, c.mu.follower = nil, nil
	c.mu.Unlock()
	var errs []error
	if st != nil {
		st.stopServing(ctx)
		errs = append(errs, st.b.Close())
	}
	if f != nil {
		f.Stop()
	}
	if h := c.target.Load(); h != nil {
		h.Close()
	}
	errs = append(errs, c.node.Shutdown(ctx), c.store.Close())
	return errors.Join(errs...)
}

func nowMs() int64 { return time.Now().UnixMilli() }
