package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// FSM is the replicated state machine a group applies its log to: hashicorp/raft's FSM
// (Apply, Snapshot, Restore). A value returned by Apply comes back from Group.Apply on the
// leader; an error value is returned as Group.Apply's error. Implementations may also
// implement raft.BatchingFSM.
type FSM = raft.FSM

// Group is one Raft group hosted on a node: a replica of the group's log and state machine.
// Its methods are safe for concurrent use.
type Group struct {
	name  string
	node  *Node
	log   *slog.Logger
	raft  *raft.Raft
	trans *raft.NetworkTransport
	store logStore
	// trailingMu orders fitTrailingEntries' changes of raft's TrailingLogs.
	trailingMu sync.Mutex
	obs        *raft.Observer

	obsCh chan raft.Observation // fed by raft (non-blocking: raft drops when full), drained by observeLoop
	quit  chan struct{}         // closed by close: stops observeLoop
	wg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu struct {
		sync.Mutex
		subs      []chan Leader
		failingAt map[string]time.Time // follower id → last contact when heartbeats began failing
		// transferTerm and transferAt are the term and time of the last leadership
		// transfer asked for (see TransferLeadership).
		transferTerm uint64
		transferAt   time.Time
	}
}

// Leader names a group's leader; zero while there is none.
type Leader struct {
	ID   string
	Addr string
}

// Server is one member of a group's configuration.
type Server struct {
	ID    string
	Addr  string
	Voter bool
}

func openGroup(n *Node, gc GroupConfig, peers []Peer) (g *Group, err error) {
	cfg, name, fsm := n.cfg, gc.Name, gc.FSM
	dir, err := n.groupDir(name)
	if err != nil {
		return nil, err
	}
	glog := n.log.With("group", name)
	hlog := newHCLog(glog, hclogLevel(cfg.RaftLogLevel))

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	openStart := time.Now()
	store, err := openLogStore(filepath.Join(dir, "wal"), cfg.LogSegmentBytes, cfg.FS, cfg.NoSync, hlog.Named("wal"))
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: %w", name, err)
	}
	cleanup = append(cleanup, func() { store.Close() })
	expand, _ := gc.FSM.(SnapshotExpander)
	snaps, err := newSnapshotStore(cfg.FS, dir, cfg.SnapshotRetain, hlog.Named("snapshots"), expand)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: %w", name, err)
	}
	layer, err := n.mux.Layer(name)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: %w", name, err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: cfg.MaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  hlog.Named("transport"),
	})
	cleanup = append(cleanup, func() { trans.Close() })

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoSnapshotRestoreOnStart = gc.DurableFSM
	// Proposals queue in a buffered channel while the leader loop writes the log, so a
	// proposer holding a lock to keep its entries in order does not wait for the disk.
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: group %s: raft config: %w", name, err)
	}

	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: read state in %s: %w", name, dir, err)
	}
	if x, ok := gc.FSM.(SnapshotChecker); ok && gc.DurableFSM {
		if rc.NoSnapshotRestoreOnStart, err = stateCovers(snaps, x); err != nil {
			return nil, fmt.Errorf("cluster: group %s: %w", name, err)
		}
		if !rc.NoSnapshotRestoreOnStart {
			glog.Warn("cluster: the replica's state is behind its newest snapshot (an install was cut short); installing the snapshot again")
		}
	}
	// Recent entries stay in memory: the leader sends each to every follower, and
	// reading them back from the log cost a sixth of a busy leader's CPU.
	cached, err := raft.NewLogCache(logCacheEntries, store)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: %w", name, err)
	}
	raftStart := time.Now()
	r, err := raft.NewRaft(rc, fsm, cached, store, snaps, pipelineTransport{trans})
	if err != nil {
		return nil, fmt.Errorf("cluster: group %s: start raft: %w", name, err)
	}
	// NewRaft reads every entry after the last snapshot (for configuration changes):
	// a start's time grows with the log a snapshot did not cover yet.
	last, _ := store.LastIndex()
	snapIndex := uint64(0)
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		snapIndex = list[0].Index
	}
	level := slog.LevelDebug
	if time.Since(openStart) >= time.Second {
		level = slog.LevelInfo // a slow start says why
	}
	glog.Log(context.Background(), level, "cluster: raft group started", "log_open", raftStart.Sub(openStart).Round(time.Millisecond),
		"raft_start", time.Since(raftStart).Round(time.Millisecond), "entries_after_snapshot", last-min(last, snapIndex))
	cleanup = append(cleanup, func() { r.Shutdown().Error() })

	// Observe before bootstrapping, so that the first leader is not missed.
	g = &Group{
		name:  name,
		node:  n,
		log:   glog,
		raft:  r,
		trans: trans,
		store: store,
		obsCh: make(chan raft.Observation, 64),
		quit:  make(chan struct{}),
	}
	g.mu.failingAt = make(map[string]time.Time)
	g.obs = raft.NewObserver(g.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(g.obs)
	g.goFunc(g.observeLoop)
	cleanup = append(cleanup, func() {
		r.DeregisterObserver(g.obs)
		close(g.quit)
		g.wg.Wait()
	})

	if !hasState && !cfg.Join && !gc.Join {
		boot := raft.Configuration{}
		if len(peers) == 0 {
			boot.Servers = []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}
		}
		for _, p := range peers {
			boot.Servers = append(boot.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
		}
		// Every node bootstraps the same configuration; raft refuses a second bootstrap on
		// a node that already has state, which the restart path above never attempts.
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("cluster: group %s: bootstrap: %w", name, err)
		}
		glog.Info("bootstrapped group", "voters", len(boot.Servers))
	}

	return g, nil
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// goFunc runs f on a goroutine that close waits for.
func (g *Group) goFunc(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// Name is the group id.
func (g *Group) Name() string { return g.name }

// close shuts the replica down: Raft, its transport (unregistering the group from the
// node's listener), the observer loop and the store. Safe to call twice.
func (g *Group) close() error {
	g.closeOnce.Do(func() {
		g.raft.DeregisterObserver(g.obs)
		// The transport first: it closes the connections it dialed, so that a call
		// waiting on a peer that stopped answering (SIGSTOP) ends at once instead of
		// holding raft's shutdown for the transport's timeout (a graceful stop of a node
		// overran its 10 s in a chaos run so).
		terr := g.trans.Close()
		err := g.raft.Shutdown().Error()
		if err == nil {
			err = terr
		}
		close(g.quit)
		g.wg.Wait()
		if serr := g.store.Close(); err == nil {
			err = serr
		}
		g.mu.Lock()
		for _, s := range g.mu.subs {
			close(s)
		}
		g.mu.subs = nil
		g.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("cluster: close group %s: %w", g.name, err)
		}
		g.closeErr = err
	})
	return g.closeErr
}

// Apply replicates cmd and returns, on the leader, once a quorum has stored it and the local
// FSM has applied it: the FSM's response, or the FSM's error if it returned one.
//
// Errors: a *NotLeaderError (errors.Is ErrNotLeader) on a follower, naming the leader when
// known; with MaybeApplied (errors.Is ErrOutcomeUnknown) when leadership was lost after the
// command entered the log; the context's error, wrapped with ErrOutcomeUnknown, when ctx ends
// first; ErrShutdown after close. A deadline on ctx also bounds the wait to enqueue.
func (g *Group) Apply(ctx context.Context, cmd []byte) (any, error) {
	f := g.raft.Apply(cmd, enqueueTimeout(ctx))
	if err := g.wait(ctx, f); err != nil {
		return nil, err
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// Proposal is a command proposed with Propose.
type Proposal struct {
	g *Group
	f raft.ApplyFuture
}

// Propose enqueues cmd for the group's log and returns at once; Wait returns what Apply
// would have. Commands proposed one after the other (by one goroutine, or under one lock)
// enter the log in that order, which Apply's concurrent callers cannot rely on.
func (g *Group) Propose(cmd []byte) *Proposal {
	return &Proposal{g: g, f: g.raft.Apply(cmd, 0)}
}

// Wait waits for the outcome of the proposal, as Apply does.
func (p *Proposal) Wait(ctx context.Context) (any, error) {
	if err := p.g.wait(ctx, p.f); err != nil {
		return nil, err
	}
	resp := p.f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// Restore makes the state in r (size bytes, as the FSM's snapshots are written) the
// group's snapshot at a new index past the log: the leader's FSM restores it and every
// follower installs it, whatever its log holds. It must be called on the leader.
func (g *Group) Restore(ctx context.Context, size int64, r io.Reader) error {
	timeout := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	return g.mapErr(g.raft.Restore(meta, r, timeout))
}

// Barrier returns once every entry committed before it is applied to the local FSM: a
// leader calls it before serving reads that must reflect all acknowledged writes.
func (g *Group) Barrier(ctx context.Context) error {
	return g.wait(ctx, g.raft.Barrier(enqueueTimeout(ctx)))
}

// VerifyLeader confirms with a quorum that this replica is still the leader.
func (g *Group) VerifyLeader(ctx context.Context) error {
	return g.wait(ctx, g.raft.VerifyLeader())
}

// Snapshot takes a snapshot now and compacts the log (keeping TrailingLogs entries).
// With nothing applied since the last snapshot there is nothing to do: no error.
func (g *Group) Snapshot(ctx context.Context) error {
	err := g.wait(ctx, g.raft.Snapshot())
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

// IsLeader reports whether this replica believes it leads the group. Only Apply or
// VerifyLeader prove it: a partitioned leader believes it until its lease runs out.
func (g *Group) IsLeader() bool { return g.raft.State() == raft.Leader }

// Term is the Raft term this replica is in. A leader that sees it change has lost and
// regained leadership: entries of its earlier term may have been committed since, or
// dropped, whatever it told their proposers.
func (g *Group) Term() uint64 { return g.raft.CurrentTerm() }

// Leader returns the leader this replica knows of; zero while there is none.
func (g *Group) Leader() Leader {
	addr, id := g.raft.LeaderWithID()
	return Leader{ID: string(id), Addr: string(addr)}
}

// LeaderChanges returns a channel that receives the group's leader each time this replica
// learns of a change (zero Leader while there is none), starting with the current leader
// when one is known. Slow readers see only the latest
// value: the channel holds one and a newer one replaces it. It is closed when the group is.
func (g *Group) LeaderChanges() <-chan Leader {
	ch := make(chan Leader, 1)
	if l := g.Leader(); l.ID != "" {
		ch <- l
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.quit:
		close(ch)
	default:
		g.mu.subs = append(g.mu.subs, ch)
	}
	return ch
}

// AddVoter adds (or promotes) a voting member; it must be called on the leader. The new
// member catches up from a snapshot and the log.
func (g *Group) AddVoter(ctx context.Context, id, addr string) error {
	return g.addServer(ctx, "voter", id, addr, g.raft.AddVoter)
}

// AddNonvoter adds a member that receives the log but does not vote: a new replica
// catches up as one, then AddVoter promotes it, so that it never counts towards a quorum
// it cannot serve yet. It must be called on the leader.
func (g *Group) AddNonvoter(ctx context.Context, id, addr string) error {
	return g.addServer(ctx, "non-voter", id, addr, g.raft.AddNonvoter)
}

func (g *Group) addServer(ctx context.Context, kind, id, addr string, add func(raft.ServerID, raft.ServerAddress, uint64, time.Duration) raft.IndexFuture) error {
	if err := validateID("node id", id); err != nil {
		return fmt.Errorf("cluster: group %s: add %s: %w", g.name, kind, err)
	}
	if err := validateAddr(addr); err != nil {
		return fmt.Errorf("cluster: group %s: add %s %s: %w", g.name, kind, id, err)
	}
	return g.wait(ctx, add(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx)))
}

// RemoveServer removes a member; it must be called on the leader. A leader may remove
// itself, after which the group elects another.
func (g *Group) RemoveServer(ctx context.Context, id string) error {
	return g.wait(ctx, g.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx)))
}

// TransferLeadership hands leadership to the voter named to, or to the most up-to-date
// voter when to is empty; it must be called on the leader and returns once the transfer
// finished or failed.
func (g *Group) TransferLeadership(ctx context.Context, to string) error {
	if to == "" {
		if err := g.mayTransfer(); err != nil {
			return err
		}
		return g.wait(ctx, g.raft.LeadershipTransfer())
	}
	servers, err := g.Configuration(ctx)
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == to {
			if !s.Voter {
				return fmt.Errorf("cluster: group %s: cannot transfer leadership to %s: not a voter", g.name, to)
			}
			if err := g.mayTransfer(); err != nil {
				return err
			}
			return g.wait(ctx, g.raft.LeadershipTransferToServer(raft.ServerID(s.ID), raft.ServerAddress(s.Addr)))
		}
	}
	return fmt.Errorf("cluster: group %s: cannot transfer leadership to %s: not a member", g.name, to)
}

// transferSpacing is how long a leader waits before it asks for a second leadership
// transfer in the same term.
//
// hashicorp/raft v1.8.0 hands a transfer to the target's replication goroutine through
// a channel of one slot, with a send that nothing interrupts (raft.go,
// leadershipTransfer). That goroutine takes it only between two rounds of replication:
// a follower catching up, or receiving a snapshot, keeps it for seconds or longer. A
// first transfer times out after ElectionTimeout and leaves its request in the slot; a
// second one blocks on the full slot, its timeout then waits for it forever, and the
// flag that makes the leader refuse every Apply and Barrier ("leadership transfer in
// progress") is never cleared: the leader goes on heartbeating and serves nothing until
// the process restarts (seen in a 5-minute chaos run: a shard without a serving leader
// for over two minutes, its leader logging "elected, but the log could not be applied"
// every second, as issue 20 reported). Each term has its own slots, so one transfer per
// term is safe, and a second one after transferSpacing very probably is.
const transferSpacing = time.Minute

// ErrTransferTooSoon refuses a leadership transfer asked for within transferSpacing of
// the previous one in the same term: the caller tries again later.
var ErrTransferTooSoon = errors.New("a leadership transfer was asked for in this term less than a minute ago")

// mayTransfer records a transfer about to be asked for, or refuses it (see
// transferSpacing).
func (g *Group) mayTransfer() error {
	term := g.raft.CurrentTerm()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.transferTerm == term && time.Since(g.mu.transferAt) < transferSpacing {
		return fmt.Errorf("cluster: group %s: %w", g.name, ErrTransferTooSoon)
	}
	g.mu.transferTerm, g.mu.transferAt = term, time.Now()
	return nil
}

// Configuration returns the group's latest configuration as this replica knows it.
func (g *Group) Configuration(ctx context.Context) ([]Server, error) {
	f := g.raft.GetConfiguration()
	if err := g.wait(ctx, f); err != nil {
		return nil, err
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// enqueueTimeout turns ctx's deadline into raft's enqueue timeout (0: wait).
func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Nanosecond
	}
	return 0
}

// wait waits for f or ctx and maps raft's errors to this package's.
func (g *Group) wait(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return g.mapErr(f.Error())
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // ends when raft resolves f, at the latest on shutdown
	select {
	case err := <-done:
		return g.mapErr(err)
	case <-ctx.Done():
		return fmt.Errorf("cluster: group %s: %w: %w", g.name, ErrOutcomeUnknown, ctx.Err())
	}
}

func (g *Group) mapErr(err error) error {
	if err == nil {
		return nil
	}
	notLeader := func(maybe bool) error {
		l := g.Leader()
		return &NotLeaderError{Group: g.name, Node: g.node.cfg.NodeID, LeaderID: l.ID, LeaderAddr: l.Addr, MaybeApplied: maybe, Err: err}
	}
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrNotVoter):
		return notLeader(false)
	case errors.Is(err, raft.ErrLeadershipLost):
		return notLeader(true)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("cluster: group %s: %w", g.name, ErrShutdown)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("cluster: group %s: %w: %w", g.name, context.DeadlineExceeded, err)
	}
	return fmt.Errorf("cluster: group %s: %w", g.name, err)
}
