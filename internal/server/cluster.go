package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/bufpool"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/replica"
	"github.com/dmqio/dmq/internal/rpc"
	"github.com/dmqio/dmq/internal/seglog"
	"github.com/dmqio/dmq/internal/shard"
)

// A cluster node spreads the broker over shards (package shard): each is a Raft group
// replicating a broker's store (package replica) on the nodes of its placement
// (cluster_placement.go): every node, or as many as --replicas says. The node serves the
// shards it leads: on becoming a shard's leader it waits until every committed entry is
// applied, records its client addresses in the shard's replicated metadata and opens a
// broker on the replica; on losing leadership it closes that broker. One gRPC server
// per node routes each call to the broker of the call's shard (rpc.RoutingInterceptors)
// or answers Unavailable naming that shard's leader, which the SDK follows. The first
// shard, s0, also holds what belongs to no topic: users, tokens, the audit log, clients.

// clusterNode is the cluster side of a Server.
type clusterNode struct {
	s    *Server
	node *cluster.Node
	// nShards is the cluster's shard count; slots holds each shard as this node has it
	// (replaced when the node starts or stops keeping a replica of it).
	nShards int
	slots   []atomic.Pointer[shardReplica]
	// createdReplicas is how many nodes keep each shard but s0 (0: every node) as this
	// node was started with: the cluster's count until s0 records one (replicaCount).
	createdReplicas int
	// started is when this node started: a member it never heard from counts as
	// unreachable since then (placement).
	started time.Time
	// promotions is what reconcile remembers of the replicas catching up (placement).
	promotions map[string]uint64
	grpc       *grpc.Server
	health     *health.Server
	// peers are connections to the other nodes' client ports, for calls about every
	// shard (lists of topics); peerHTTP carries requests passed to their HTTP ports.
	peers    *peerConns
	peerHTTP *http.Transport
	// apps is the cluster's registry of applications, users and console sessions: kept
	// by shard s0 and read from this node's replica of it, so that every node
	// authenticates every call. Changes are written by s0's leader and reloaded here
	// as they are applied (authChanged).
	apps        *auth.Registry
	authChanged chan struct{}
	// reloads is closed, and replaced, each time the registry reloads (catchUpApps).
	reloads struct {
		sync.Mutex
		ch chan struct{}
	}
	// peerBook is what the other nodes said about themselves (cluster_peers.go).
	peerBook peerBook

	quit chan struct{}
	wg   sync.WaitGroup

	// leaderChanges counts the leader changes this node saw in any shard (elections
	// that produced a leader, and leaderless spells).
	leaderChanges atomic.Uint64
	// diskLow is set while the data directory's free space is below the reserve (logged
	// once when it falls below, once when it is back).
	diskLow atomic.Bool
}

// shardReplica is one shard on this node: its replica, its Raft group and, while this
// node leads it, its broker. On a node that keeps no replica of the shard, store and
// group are nil: it only knows the shard's leader, from what the other nodes tell.
type shardReplica struct {
	c     *clusterNode
	name  string
	index int
	store *replica.Store
	group *cluster.Group
	// quit ends the role loop when the replica is dropped; done is closed when it ended.
	quit, done chan struct{}
	// uses holds off dropping the replica while a reader of its store (status, the
	// leader's addresses) is at work; dropped is set, under it, once it is dropped.
	uses    sync.RWMutex
	dropped bool

	mu struct {
		sync.Mutex
		leading *shardStack // while this node leads
		since   time.Time   // when this node last became leader
	}
}

// shardStack is a led shard's broker with what serves it over HTTP.
type shardStack struct {
	backend rpc.Backend
	http    http.Handler
	calls   callGate
	// term is the Raft term the broker was opened in: it serves that term only.
	term uint64
}

func (s *Server) startCluster() error {
	peers, err := cluster.ParsePeers(s.cfg.Peers)
	if err != nil {
		return err
	}
	serverTLS, peerTLS, err := clusterTLS(s.cfg.NodeID, s.cfg.TLSCert, s.cfg.TLSKey, s.cfg.ClusterCA)
	if err != nil {
		return err
	}
	node, err := cluster.New(cluster.Config{
		ClusterID:  s.cfg.ClusterID,
		NodeID:     s.cfg.NodeID,
		DataDir:    s.cfg.DataDir,
		FS:         s.cfg.FS,
		ListenAddr: s.cfg.ClusterListen,
		Peers:      peers,
		Join:       s.cfg.Join,
		Faults:     s.cfg.ClusterFaults,
		TLS:        serverTLS,
		DialTLS:    peerTLS,
		// Zero values are the package's defaults.
		SnapshotThreshold: uint64(s.cfg.SnapshotEntries),
		SnapshotInterval:  s.cfg.SnapshotInterval,
		TrailingLogs:      uint64(s.cfg.TrailingEntries),
		// The Raft log's segments are the size of the topic logs'.
		LogSegmentBytes: int(s.cfg.SegmentBytes),
		NoSync:          s.cfg.NoSync,
		Logger:          s.logger,
	})
	if err == nil {
		err = node.Start()
	}
	if err != nil {
		return err
	}
	created, err := node.HasGroupState(shard.Meta)
	if err == nil && !created && !s.cfg.Join && len(peers) > 1 {
		err = refuseLostMember(node, s.cfg.NodeID, peers)
	}
	if err != nil {
		node.Shutdown(context.Background())
		return err
	}
	// Calls to the other nodes' client ports: over TLS when those ports use it.
	var clientTLS *tls.Config
	if s.tc != nil {
		clientTLS = peerTLS
	}
	c := &clusterNode{s: s, node: node, peers: newPeerConns(clientTLS), quit: make(chan struct{}), authChanged: make(chan struct{}, 1),
		peerHTTP: &http.Transport{TLSClientConfig: clientTLS, Proxy: nil, MaxIdleConnsPerHost: 8,
			// A node that died with its machine does not refuse connections: give up on it
			// soon, as a membership change waits for the next leader (untilLeader).
			DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext},
		nShards: s.cfg.Shards, createdReplicas: s.cfg.Replicas, started: time.Now(), promotions: map[string]uint64{}}
	c.reloads.ch = make(chan struct{})
	if err := c.openShards(peers); err != nil {
		c.closeShards(context.Background())
		return err
	}
	c.peerBook.peers = map[string]peerView{}
	if err := node.ServeInfo(c.selfInfo); err != nil {
		c.closeShards(context.Background())
		return err
	}
	s.node = c
	c.goFunc(c.reloadApps)
	c.goFunc(func() { c.every(peerPollInterval, c.pollPeers) })
	c.serveGRPC()
	for _, sh := range c.shardList() {
		if sh.hosted() {
			c.startRoleLoop(sh)
		}
	}
	c.goFunc(func() { c.every(reconcileInterval, c.reconcile) })
	if c.nShards > 1 {
		c.goFunc(func() { c.every(balanceInterval, c.balanceOnce) })
	}
	c.awaitLoneVoter(loneVoterWait)
	return nil
}

// loneVoterWait bounds how long a node that is its shards' only voter waits at start
// for its own election.
const loneVoterWait = 10 * time.Second

// awaitLoneVoter returns once this node serves every shard whose only voter it is (a
// one-voter cluster elects itself within a heartbeat timeout, and a server that says it
// listens should serve), or after within. A shard with other voters needs them to
// elect a leader, which start does not wait for.
func (c *clusterNode) awaitLoneVoter(within time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for _, sh := range c.shardList() {
		if !sh.hosted() {
			continue
		}
		servers, err := sh.group.Configuration(ctx)
		if err != nil || len(servers) != 1 || servers[0].ID != c.s.cfg.NodeID || !servers[0].Voter {
			continue
		}
		for sh.leading() == nil {
			select {
			case <-ctx.Done():
				c.s.logger.Warn("cluster: this node is the shard's only voter but does not serve it yet", "shard", sh.name, "waited", within)
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// shard returns shard i as this node has it.
func (c *clusterNode) shard(i int) *shardReplica { return c.slots[i].Load() }

// shardList returns every shard as this node has it now.
func (c *clusterNode) shardList() []*shardReplica {
	out := make([]*shardReplica, c.nShards)
	for i := range out {
		out[i] = c.shard(i)
	}
	return out
}

// hosted reports whether this node keeps a replica of the shard.
func (sh *shardReplica) hosted() bool { return sh.group != nil }

// reading runs f, which reads the replica's store, unless the replica was dropped (then
// it reports false): a reader may hold a shardReplica that reconcile has just replaced.
func (sh *shardReplica) reading(f func()) bool {
	sh.uses.RLock()
	defer sh.uses.RUnlock()
	if sh.dropped {
		return false
	}
	f()
	return true
}

// startRoleLoop runs a kept shard's role loop until the node stops or drops the replica.
func (c *clusterNode) startRoleLoop(sh *shardReplica) {
	c.goFunc(func() {
		defer close(sh.done)
		c.roleLoop(sh)
	})
	c.goFunc(func() { c.snapshotOnGrowth(sh) })
}

// snapshotOnGrowth takes a snapshot of the shard whenever its replica applied
// snapshot_bytes since the last one. Raft's own trigger counts entries (checked every
// snapshot_interval), and entries are publish batches of any size: without this, a
// restart after a busy minute replayed hundreds of megabytes before it served.
func (c *clusterNode) snapshotOnGrowth(sh *shardReplica) {
	for {
		select {
		case <-c.quit:
			return
		case <-sh.quit:
			return
		case <-sh.store.Grown():
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := sh.group.Snapshot(ctx)
		cancel()
		if err != nil {
			c.s.logger.Warn("cluster: snapshot after the log grew failed; raft's own schedule goes on", "shard", sh.name, "err", err)
		}
	}
}

// openShards opens the replicas this node keeps: s0 always; a shard whose Raft state
// it has; and, when the cluster is created, the shards its placement gives this node,
// bootstrapping each with the nodes of its placement. A node that joins, or restarts,
// gets the others' replicas from reconcile, as their leaders add it: bootstrapping a
// shard then would start a second group of that name.
func (c *clusterNode) openShards(peers []cluster.Peer) error {
	s := c.s
	c.slots = make([]atomic.Pointer[shardReplica], c.nShards)
	created, err := c.node.HasGroupState(shard.Meta)
	if err != nil {
		return err
	}
	creating := !created && !s.cfg.Join
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.ID)
	}
	if len(ids) == 0 {
		ids = []string{s.cfg.NodeID}
	}
	for i := range c.nShards {
		name := shard.Name(i)
		has, err := c.node.HasGroupState(name)
		if err != nil {
			return err
		}
		placed := shard.Placement(i, ids, c.createdReplicas)
		var boot []cluster.Peer // nil: the node's peers
		switch {
		case i == 0 || has:
		case creating && slices.Contains(placed, s.cfg.NodeID):
			for _, p := range peers { // none: a cluster of this node alone
				if slices.Contains(placed, p.ID) {
					boot = append(boot, p)
				}
			}
		default:
			c.slots[i].Store(&shardReplica{c: c, name: name, index: i})
			continue
		}
		sh, err := c.openReplica(i, boot, false, peers)
		if sh != nil {
			c.slots[i].Store(sh)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shardDir is where shard i's replica keeps its data: the data directory's own layout
// for the first (a single node's data becomes it), <data>/shards/<name> for the others.
func (c *clusterNode) shardDir(i int) string {
	if i == 0 {
		return c.s.cfg.DataDir
	}
	return filepath.Join(c.s.cfg.DataDir, "shards", shard.Name(i))
}

// openReplica opens shard i's replica and Raft group: at start (boot: the shard's
// initial members, nil for the node's peers; peers: the node's), or later, when
// reconcile places the shard on this node (join: the group waits for its leader to add
// this node). The replica is returned, also on error, for closeShards.
func (c *clusterNode) openReplica(i int, boot []cluster.Peer, join bool, peers []cluster.Peer) (*shardReplica, error) {
	s := c.s
	name := shard.Name(i)
	start := time.Now()
	err := meta.CheckPresent(s.cfg.FS, c.shardDir(i), func() ([]string, error) {
		return diskfs.ListDirs(s.cfg.FS, filepath.Join(c.shardDir(i), "topics"))
	})
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", name, err)
	}
	store, err := replica.Open(replica.Options{
		DataDir: c.shardDir(i),
		FS:      s.cfg.FS,
		Log: seglog.Options{
			SegmentBytes:   s.cfg.SegmentBytes,
			MaxRecordBytes: s.cfg.MaxBodyBytes + 1<<20,
		},
		Logger:        s.logger.With("shard", name),
		SnapshotBytes: s.cfg.SnapshotBytes,
		DiskReserve:   s.cfg.DiskReserve,
	})
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", name, err)
	}
	storeTook := time.Since(start)
	sh := &shardReplica{c: c, name: name, index: i, store: store, quit: make(chan struct{}), done: make(chan struct{})}
	if !join {
		if err := adoptData(c.node, sh, peers, c.nShards, s.cfg.DataDir); err != nil {
			return sh, err
		}
	}
	if i == 0 {
		if err := checkShardCount(c.node, c.nShards); err != nil {
			return sh, err
		}
		if n, ok, err := store.Meta().Replicas(); err == nil && ok && n != c.createdReplicas {
			s.logger.Warn("cluster: this cluster keeps each shard on "+replicasText(n)+" (dmq cluster set-replicas changes it): --replicas is ignored", "replicas", c.createdReplicas)
		}
		// Before the group replays its log: every change it brings reloads.
		store.OnAuthChange(func(*meta.Store) {
			select {
			case c.authChanged <- struct{}{}:
			default: // a reload is due already
			}
		})
		if c.apps, err = auth.Open(store.Meta()); err != nil {
			return sh, err
		}
		c.apps.CatchUp = c.catchUpApps
	}
	groupStart := time.Now()
	sh.group, err = c.node.OpenGroup(cluster.GroupConfig{Name: name, FSM: store, DurableFSM: true, Peers: boot, Join: join})
	if err != nil {
		return sh, fmt.Errorf("shard %s: %w", name, err)
	}
	store.Attach(sh.group)
	// How long a start takes, and where: an operator waiting for a node sees it.
	s.logger.Info("cluster: shard opened", "shard", name, "took", time.Since(start).Round(time.Millisecond),
		"replica", storeTook.Round(time.Millisecond), "raft", time.Since(groupStart).Round(time.Millisecond))
	return sh, nil
}

// clusterTLS builds, when the cluster has a CA, the TLS configurations of the cluster
// port (mutual TLS: the node's certificate, peers verified against the CA) and of the
// node's calls to the other nodes (the same certificate, servers verified against the CA).
// The certificate must name the node id: peers admit a certificate for the node it names
// only (transport.CertNames).
func clusterTLS(nodeID, certFile, keyFile, caFile string) (server, peer *tls.Config, err error) {
	if caFile == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load the node's certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if !transport.CertNames([]*x509.Certificate{cert.Leaf}, nodeID) {
		return nil, nil, fmt.Errorf("the node's certificate %s does not name node %s: with --cluster-ca, each node's certificate must carry its node id as its common name or one of its DNS names, so that no node can pass for another (its names: %s, %v)", certFile, nodeID, cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames)
	}
	pool, err := loadCA("cluster CA", caFile)
	if err != nil {
		return nil, nil, err
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	peer = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, peer, nil
}

// checkShardCount compares the shard count with the one the node's data was created
// with (recorded on first start). Data from before shards existed has one.
func checkShardCount(node *cluster.Node, n int) error {
	has, err := node.HasGroupState(shard.Meta)
	if err != nil {
		return err
	}
	want := strconv.Itoa(n)
	if has {
		want = "1" // recorded only if missing: data from before shards
	}
	got, err := node.RecordedSetting("shards", want)
	if err != nil {
		return err
	}
	if got != strconv.Itoa(n) {
		return fmt.Errorf("this node's data belongs to a cluster of %s shards, a count fixed when the cluster was created: start it with --shards %s", got, got)
	}
	return nil
}

// adoptData prepares a shard's replica that holds data but no Raft state yet: a single
// node, or a backup of a cluster's node, becoming the first node of a cluster. Its
// replication log starts from 1, so the applied index of an earlier one is forgotten,
// and the first time the node leads the shard its data becomes the group's snapshot.
// Several nodes bootstrapping together could elect one without the data, whose log
// would then be applied over it: that is refused, with the way to do it. A single
// broker's data holds all its topics in one store, which becomes shard s0: only a
// cluster of one shard can take it (a backup of a sharded node has its shards/).
func adoptData(node *cluster.Node, sh *shardReplica, peers []cluster.Peer, shards int, dataDir string) error {
	has, err := node.HasGroupState(sh.name)
	if err != nil || has {
		return err
	}
	empty, err := sh.store.Empty()
	if err != nil || empty {
		return err
	}
	if len(peers) > 1 {
		return errors.New("this data directory holds a broker's topics and settings but no cluster state: " +
			"start it alone as the cluster's first node (--node-id without --peers), then start the others with --join " +
			"and add them with dmq cluster add-node; they copy its data")
	}
	if sh.name == shard.Meta && shards > 1 {
		if has, err := diskfs.Exists(sh.c.s.cfg.FS, filepath.Join(dataDir, "shards")); err == nil && !has {
			// Its topics would stay in s0 while their names send clients to other shards.
			return fmt.Errorf("this data directory holds a broker's topics and settings: it can become the first node of a cluster of one shard (--shards 1), not of %d", shards)
		}
	}
	if err := sh.store.Meta().ResetReplication(); err != nil {
		return err
	}
	return sh.store.MarkSeedNeeded()
}

// serveGRPC starts the node's gRPC server: every call finds its shard's broker through
// Route, then is authenticated against the cluster's applications (shard s0's).
func (c *clusterNode) serveGRPC() {
	s := c.s
	opts := append(s.grpcOptions(bufpool.New()), c.membersInterceptor(), c.fanoutInterceptor())
	opts = append(opts, rpc.RoutingInterceptors(c)...)
	opts = append(opts, grpcSecurity(s.tc, nil, false)...)
	if s.cfg.Auth {
		opts = append(opts, rpc.AuthInterceptorsFor(c.applications)...)
	}
	c.grpc = grpc.NewServer(opts...)
	rpc.RegisterRouted(c.grpc, s.cfg.Version)
	c.health = health.NewServer()
	c.health.SetServingStatus("dmq.v1.Broker", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(c.grpc, c.health)
	reflection.Register(c.grpc)
	s.goFunc(func() {
		if err := c.grpc.Serve(s.grpcLis); err != nil {
			s.logger.Error("gRPC server stopped", "err", err)
		}
	})
}

// every runs f every interval until the node stops.
func (c *clusterNode) every(interval time.Duration, f func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		f()
	}
}

func (c *clusterNode) goFunc(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// shardHeader names the shard a call is about when it is not found from a topic: the
// parts of a call about every shard that one node sends to another.
const shardHeader = "dmq-shard"

// Route implements rpc.Router: the call goes to the broker of its topic's shard if this
// node leads it, and is otherwise refused naming that shard's leader.
func (c *clusterNode) Route(ctx context.Context, topic string) (*rpc.Backend, func(), error) {
	sh := c.shardOf(topic)
	// Read without copying the call's metadata: Route runs for every call and message.
	if v := metadata.ValueFromIncomingContext(ctx, shardHeader); len(v) == 1 {
		i, err := shard.Index(v[0])
		if err != nil || i >= c.nShards {
			return nil, nil, status.Errorf(codes.InvalidArgument, "dmq: %s names no shard of this cluster", v[0])
		}
		sh = c.shard(i)
	}
	st := sh.enter()
	if st == nil {
		return nil, nil, notLeaderError(c.s.cfg.NodeID, sh.name, topic, sh.leaderAddrs())
	}
	return &st.backend, st.calls.leave, nil
}

// enter admits a call to the shard's broker, or returns nil: this node does not lead the
// shard, or its broker is of an earlier term (the role loop is replacing it) or closing.
// The caller calls st.calls.leave when done.
func (sh *shardReplica) enter() *shardStack {
	st := sh.leading()
	if st == nil || st.term != sh.group.Term() || !st.calls.enter() {
		return nil
	}
	return st
}

// shardOf is the shard holding topic ("": the first).
func (c *clusterNode) shardOf(topic string) *shardReplica {
	return c.shard(shard.Of(topic, c.nShards))
}

// applications is the registry authenticating calls: the cluster's (see apps).
func (c *clusterNode) applications(context.Context) (*auth.Registry, error) {
	return c.apps, nil
}

// reloadApps reloads the registry from shard s0's replica when what it holds changed.
func (c *clusterNode) reloadApps() {
	for {
		select {
		case <-c.quit:
			return
		case <-c.authChanged:
		}
		if err := c.shard(0).store.ReadMeta(func(ms *meta.Store) error { return c.apps.Reload(ms) }); err != nil {
			c.s.logger.Error("cluster: could not reload applications, users and sessions", "err", err)
			continue
		}
		c.reloads.Lock()
		close(c.reloads.ch)
		c.reloads.ch = make(chan struct{})
		c.reloads.Unlock()
	}
}

// authCatchUp is how long a node that does not lead s0 waits, when a token or a session
// is not known, for a change made through s0's leader to reach its registry: the time an
// entry committed there takes to be applied here, a heartbeat or two.
const authCatchUp = 250 * time.Millisecond

// catchUpApps is the registry's CatchUp: on a node that does not lead s0, it waits up to
// authCatchUp for the registry's next reload (after a change this node's replica has
// applied, or one still to come) and reports whether one came. A token that is just
// unknown costs its caller that wait.
func (c *clusterNode) catchUpApps() bool {
	if c.shard(0).group.IsLeader() {
		return false // the leader's registry has whatever it committed
	}
	c.reloads.Lock()
	next := c.reloads.ch
	c.reloads.Unlock()
	t := time.NewTimer(authCatchUp)
	defer t.Stop()
	select {
	case <-next:
		return true
	case <-t.C:
		return false
	}
}

// notLeaderError is the status a node answers a call about a shard it does not lead
// with; the SDK reads the ErrorInfo.
func notLeaderError(self, shardName, topic string, leader meta.Node) error {
	msg := fmt.Sprintf("dmq: node %s does not lead shard %s; no leader is known yet (an election is in progress)", self, shardName)
	if leader.GRPC != "" {
		msg = fmt.Sprintf("dmq: node %s does not lead shard %s; its leader is %s at %s", self, shardName, leader.ID, leader.GRPC)
	}
	md := map[string]string{"leader_id": leader.ID, "leader_addr": leader.GRPC, "shard": shardName}
	if topic != "" {
		md["topic"] = topic
	}
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Reason: "NOT_LEADER", Domain: "dmq.io", Metadata: md})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

func (sh *shardReplica) leading() *shardStack {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.mu.leading
}

// leaderAddrs returns the shard leader's id and client addresses, as far as this node
// knows: each leader records them in its shard's replicated metadata when elected.
func (sh *shardReplica) leaderAddrs() meta.Node {
	if !sh.hosted() {
		return sh.c.leaderFromPeers(sh.name)
	}
	l := sh.group.Leader()
	if l.ID == "" {
		return meta.Node{}
	}
	if l.ID == sh.c.s.cfg.NodeID {
		return meta.Node{ID: l.ID, GRPC: sh.c.s.GRPCAddr(), HTTP: sh.c.s.HTTPAddr()}
	}
	if p, ok := sh.c.peerAddrs(l.ID); ok {
		return p // what the node itself said in the last second
	}
	n := meta.Node{ID: l.ID}
	sh.reading(func() {
		sh.store.ReadMeta(func(ms *meta.Store) error {
			if recorded, err := ms.GetNode(l.ID); err == nil {
				n = recorded
			}
			return nil
		})
	})
	return n
}

// roleLoop follows a shard's leadership changes (and checks every second, in case one
// was missed or a promotion failed).
func (c *clusterNode) roleLoop(sh *shardReplica) {
	changes := sh.group.LeaderChanges()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-sh.quit:
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			c.leaderChanges.Add(1)
		case <-tick.C:
			if sh.index == 0 {
				c.watchDisk()
			}
		}
		leading := sh.group.IsLeader()
		st := sh.leading()
		switch {
		case leading && st == nil:
			sh.lead()
		case !leading && st != nil:
			sh.follow()
		case leading && st.term != sh.group.Term():
			// Leadership was lost and regained between two looks: the broker of the
			// earlier term must not go on (see replica.LeaderStorage).
			sh.follow()
			sh.lead()
		case leading && sh.store.Stalled() != nil && len(sh.group.Stats().Servers) > 1:
			// Its replica cannot write: the clients are better served by another (a lone
			// voter stays, and refuses publishes while it stalls).
			sh.handOn("this node's replica cannot write", sh.store.Stalled())
		}
	}
}

// watchDisk logs when the data directory's free space falls below the reserve, and when
// it is back above.
func (c *clusterNode) watchDisk() {
	d := c.disk()
	if d.Error != "" || c.diskLow.Load() == d.Low() {
		return
	}
	c.diskLow.Store(d.Low())
	if d.Low() {
		c.s.logger.Warn("disk space low: publishes are refused (disk full) until space is freed",
			"dir", c.s.cfg.DataDir, "free_mib", d.FreeBytes>>20, "reserve_mib", d.ReserveBytes>>20)
		return
	}
	c.s.logger.Info("disk space back above the reserve: publishes are taken again", "dir", c.s.cfg.DataDir, "free_mib", d.FreeBytes>>20)
}

// handOn hands the shard's leadership to another voter, when there is one, because this
// node cannot serve it (why, err); a lone voter stays and retries.
func (sh *shardReplica) handOn(why string, err error) {
	s := sh.c.s
	if len(sh.group.Stats().Servers) < 2 {
		s.logger.Warn("cluster: "+why+"; will retry", "shard", sh.name, "err", err)
		return
	}
	s.logger.Error("cluster: "+why+"; handing leadership to another node", "shard", sh.name, "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch err := sh.group.TransferLeadership(ctx, ""); {
	case errors.Is(err, cluster.ErrTransferTooSoon):
		s.logger.Debug("cluster: leadership transfer not tried again yet", "shard", sh.name, "err", err)
	case err != nil:
		s.logger.Warn("cluster: leadership transfer failed", "shard", sh.name, "err", err)
	}
}

// lead opens the shard's broker on the replica once it holds every committed entry.
func (sh *shardReplica) lead() {
	s := sh.c.s
	start := time.Now()
	if err := sh.store.Broken(); err != nil {
		// Elected with a replica that differs from the others: hand leadership on.
		sh.handOn("elected, but this node's replica is broken", err)
		return
	}
	if err := sh.store.Stalled(); err != nil {
		sh.handOn("elected, but this node's replica cannot write", err)
		return
	}
	term := sh.group.Term() // the broker serves this term only
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sh.group.Barrier(ctx); err != nil {
		// A leader that cannot apply its log cannot serve: clients would be told it
		// leads and that it does not, for as long as it lasts.
		sh.handOn("elected, but the log could not be applied", err)
		return
	}
	if sh.store.SeedNeeded() {
		err := sh.store.Seed(func(size int64, r io.Reader) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			return sh.group.Restore(ctx, size, r)
		})
		if err != nil {
			s.logger.Error("cluster: could not make this node's data the cluster's snapshot; will retry", "err", err)
			return
		}
	}
	err := sh.store.Meta().PutNode(meta.Node{ID: s.cfg.NodeID, GRPC: s.GRPCAddr(), HTTP: s.HTTPAddr(), UpdatedAtMs: time.Now().UnixMilli()})
	if err != nil {
		s.logger.Warn("cluster: elected, but could not record this node's addresses; will retry", "shard", sh.name, "err", err)
		return
	}
	if sh.name == shard.Meta {
		if err := sh.c.recordReplicas(); err != nil {
			s.logger.Warn("cluster: elected, but could not record the replicas per shard; will retry", "err", err)
			return
		}
		if err := s.announceSecurity(sh.c.apps); err != nil {
			s.logger.Warn("cluster: elected, but could not create the setup token; will retry", "err", err)
			return
		}
	}
	b, apps, err := s.openBroker(sh.store.Storage(term), sh.c.apps)
	if err != nil {
		s.logger.Error("cluster: elected, but the broker did not open; will retry", "shard", sh.name, "err", err)
		return
	}
	st := &shardStack{backend: rpc.Backend{Shard: sh.name, Broker: b, Apps: apps}, term: term}
	mux := http.NewServeMux()
	sh.membershipRoutes(mux, s.apiRoutes(mux, b, apps))
	st.http = mux
	sh.mu.Lock()
	sh.mu.leading, sh.mu.since = st, time.Now()
	sh.mu.Unlock()
	sh.c.updateHealth()
	s.logger.Info("cluster: this node leads the shard and serves its clients", "shard", sh.name, "node", s.cfg.NodeID, "took", time.Since(start).Round(time.Millisecond))
}

// follow closes the shard's broker: calls in progress finish (for a few seconds at
// most), subscriptions end at once, and later calls are sent to the new leader.
func (sh *shardReplica) follow() {
	sh.mu.Lock()
	st := sh.mu.leading
	sh.mu.leading = nil
	sh.mu.Unlock()
	sh.c.updateHealth()
	if st == nil {
		return
	}
	sh.c.closeStack(sh, st)
	sh.c.s.logger.Info("cluster: this node no longer leads the shard; clients are sent to its leader", "shard", sh.name, "leader", sh.group.Leader().ID)
}

// closeStack ends a shard's serving: subscriptions end (their clients re-attach to the
// new leader), calls in progress get until ctx's end, then the broker closes.
func (c *clusterNode) closeStack(sh *shardReplica, st *shardStack) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st.backend.Broker.EndSubscriptions()
	if !st.calls.close(ctx) {
		c.s.logger.Warn("cluster: calls still in progress when the shard's broker closed", "shard", sh.name)
	}
	if err := st.backend.Broker.Close(); err != nil {
		c.s.logger.Warn("cluster: closing the broker after losing leadership", "shard", sh.name, "err", err)
	}
}

// updateHealth reports the node SERVING while it leads a shard.
func (c *clusterNode) updateHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if c.leadsAny() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	c.health.SetServingStatus("dmq.v1.Broker", st)
}

func (c *clusterNode) leadsAny() bool {
	for _, sh := range c.shardList() {
		if sh.leading() != nil {
			return true
		}
	}
	return false
}

// broker returns the broker of shard s0 while this node leads it.
func (c *clusterNode) broker() *broker.Broker {
	if st := c.shard(0).leading(); st != nil {
		return st.backend.Broker
	}
	return nil
}

// shutdown stops serving, closes the brokers that run, then Raft and the replicas.
func (c *clusterNode) shutdown(ctx context.Context) error {
	close(c.quit)
	c.wg.Wait()
	var stacks []*shardStack
	for _, sh := range c.shardList() {
		sh.mu.Lock()
		if st := sh.mu.leading; st != nil {
			stacks = append(stacks, st)
			st.backend.Broker.EndSubscriptions()
		}
		sh.mu.leading = nil
		sh.mu.Unlock()
	}
	stopGRPC(ctx, c.grpc)
	var errs []error
	for _, st := range stacks {
		// Returns once the group applied the broker's last writes.
		errs = append(errs, st.backend.Broker.Close())
	}
	// Then the shards go to other voters, with those writes.
	c.handOff(ctx)
	c.peers.close()
	c.peerHTTP.CloseIdleConnections()
	return errors.Join(append(errs, c.closeShards(ctx))...)
}

// handOffTimeout bounds the leadership transfers of a node that stops.
const handOffTimeout = 5 * time.Second

// handOff hands the leadership of every shard this node leads to another voter before
// the node stops (a controlled shutdown): the others need not wait out an election
// timeout, and the clients move at once. A shard without another voter, or whose transfer
// fails within handOffTimeout, is left to the election.
func (c *clusterNode) handOff(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, handOffTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, sh := range c.shardList() {
		if !sh.hosted() || !sh.group.IsLeader() || len(sh.group.Stats().Servers) < 2 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := sh.group.TransferLeadership(ctx, ""); err != nil {
				c.s.logger.Warn("cluster: could not hand the shard on before stopping; the others will elect a leader", "shard", sh.name, "err", err)
				return
			}
			c.s.logger.Info("cluster: handed the shard on before stopping", "shard", sh.name, "to", sh.group.Leader().ID, "took", time.Since(start).Round(time.Millisecond))
		}()
	}
	wg.Wait()
}

// closeShards stops Raft, then closes the replicas.
func (c *clusterNode) closeShards(ctx context.Context) error {
	for i := range c.slots {
		if sh := c.shard(i); sh != nil && sh.store != nil {
			sh.store.Interrupt() // a replica stalled on a full disk lets Raft stop
		}
	}
	errs := []error{c.node.Shutdown(ctx)}
	for i := range c.slots {
		if sh := c.shard(i); sh != nil && sh.store != nil {
			errs = append(errs, sh.store.Close())
		}
	}
	return errors.Join(errs...)
}

// callGate counts the calls in progress on a broker so that it closes after them.
type callGate struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0 after close
}

// enter admits a call, unless the gate is closed.
func (g *callGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *callGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close refuses new calls and waits for those in progress until ctx ends; it reports
// whether they all finished.
func (g *callGate) close(ctx context.Context) bool {
	g.mu.Lock()
	g.closed = true
	if g.n == 0 {
		g.mu.Unlock()
		return true
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

func nowMs() int64 { return time.Now().UnixMilli() }
