package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/diskfs"
)

// Node is one cluster member: its identity, its cluster listener shared by all its groups
// through a transport.Mux, and the Raft groups it hosts.
type Node struct {
	cfg     Config
	raftDir string
	log     *slog.Logger

	mux *transport.Mux

	mu struct {
		sync.Mutex
		started bool
		closed  bool
		groups  map[string]*Group
		info    *transport.Layer // the info exchange's (info.go), once used
	}
}

// New validates cfg and returns a node that touches no file and opens no socket until Start.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		raftDir: filepath.Join(cfg.DataDir, "raft"),
		log:     cfg.Logger.With("node", cfg.NodeID),
	}
	n.mu.groups = make(map[string]*Group)
	return n, nil
}

// ID is the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Addr is the cluster address peers dial; empty before Start.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mux == nil {
		return ""
	}
	return n.mux.Addr()
}

// Start checks the data directory's identity (creating it on first start), opens the
// cluster listener and starts accepting connections. A refused identity changes nothing and
// leaves no socket open. Groups are opened afterwards with OpenGroup.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.started {
		return errors.New("cluster: node already started")
	}
	if err := checkIdentity(n.cfg.FS, n.raftDir, n.cfg.ClusterID, n.cfg.NodeID); err != nil {
		if n.cfg.Listener != nil {
			n.cfg.Listener.Close()
		}
		return err
	}
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.ListenAddr); err != nil {
			return fmt.Errorf("cluster: listen on %s: %w", n.cfg.ListenAddr, err)
		}
	}
	mux, err := transport.New(transport.Config{
		ClusterID:     n.cfg.ClusterID,
		NodeID:        n.cfg.NodeID,
		Listener:      ln,
		AdvertiseAddr: n.cfg.AdvertiseAddr,
		Logger:        n.cfg.Logger,
		Faults:        n.cfg.Faults,
		TLS:           n.cfg.TLS,
		DialTLS:       n.cfg.DialTLS,
	})
	if err != nil {
		ln.Close()
		return err
	}
	n.mux = mux
	mux.Run()
	n.mu.started = true
	n.log.Info("cluster node started", "cluster", n.cfg.ClusterID, "addr", mux.Addr(), "peers", FormatPeers(n.cfg.Peers))
	return nil
}

// GroupConfig names a group to open and the state machine it replicates.
type GroupConfig struct {
	// Name is the group id ("meta", "s0", ...), the same on every node.
	Name string
	// FSM is the replicated state machine. Its Apply runs on one goroutine in log order.
	FSM FSM
	// Peers overrides the node's Peers as this group's initial configuration (placement of
	// shards on a subset of nodes); nil means the node's.
	Peers []Peer
	// DurableFSM says the FSM keeps its state on disk and makes it durable before each
	// snapshot's Persist returns: a restart then resumes from that state and replays
	// the log after the last snapshot, instead of restoring the snapshot (Restore is
	// only called to install a snapshot sent by the leader). Apply must then be
	// idempotent for entries after the snapshot that the state already holds.
	DurableFSM bool
	// Join opens the group without bootstrapping it even on a node that has no state for
	// it: the replica waits to be added by the group's leader (a replica placed on this
	// node after the cluster was created).
	Join bool
}

// SnapshotChecker is implemented by a DurableFSM that can tell whether its state on disk
// covers a snapshot. Raft stores a snapshot sent by the leader before the FSM installs
// it, so after a crash between the two the newest snapshot is ahead of the state: the
// group then installs that snapshot again at start.
type SnapshotChecker interface {
	// CoversSnapshot reads as much of the snapshot as it needs and reports whether the
	// state on disk already holds everything in it.
	CoversSnapshot(r io.Reader) (bool, error)
}

// stateCovers reports whether fsm's state covers the newest snapshot in snaps.
func stateCovers(snaps raft.SnapshotStore, fsm SnapshotChecker) (bool, error) {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return true, err
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return false, fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	defer rc.Close()
	ok, err := fsm.CoversSnapshot(rc)
	if err != nil {
		return false, fmt.Errorf("snapshot %s: %w", list[0].ID, err)
	}
	return ok, nil
}

// OpenGroup opens (creating on first use) the group's storage under
// <DataDir>/raft/<name>/, starts its Raft instance on the node's shared listener and, on a
// node that is not joining and has no state for the group yet, bootstraps its initial
// configuration. It holds the node's lock while raft restores the group's latest snapshot,
// so open groups before serving traffic.
func (n *Node) OpenGroup(gc GroupConfig) (*Group, error) {
	if err := validateID("group name", gc.Name); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if gc.FSM == nil {
		return nil, fmt.Errorf("cluster: group %s: no FSM", gc.Name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !n.mu.started:
		return nil, errors.New("cluster: OpenGroup before Start")
	case n.mu.closed:
		return nil, ErrShutdown
	case n.mu.groups[gc.Name] != nil:
		return nil, fmt.Errorf("cluster: group %s is already open on node %s", gc.Name, n.cfg.NodeID)
	}
	peers := gc.Peers
	if peers == nil {
		peers = n.cfg.Peers
	}
	g, err := openGroup(n, gc, peers)
	if err != nil {
		return nil, err
	}
	n.mu.groups[gc.Name] = g
	return g, nil
}

// CloseGroup stops a group this node hosts (a replica the group no longer has) and,
// with removeState, deletes its Raft log and snapshots. The group may be opened again
// later, then without state. A group that is not open is not an error.
func (n *Node) CloseGroup(name string, removeState bool) error {
	n.mu.Lock()
	g := n.mu.groups[name]
	delete(n.mu.groups, name)
	n.mu.Unlock()
	var err error
	if g != nil {
		err = g.close()
	}
	if err == nil && removeState {
		if err = validateID("group name", name); err == nil {
			dir := filepath.Join(n.raftDir, name)
			if err = n.cfg.FS.RemoveAll(dir); err == nil {
				err = diskfs.SyncDir(n.cfg.FS, n.raftDir)
			}
		}
	}
	return err
}

// Group returns an open group, or nil.
func (n *Node) Group(name string) *Group {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.groups[name]
}

// Groups returns the names of the open groups.
func (n *Node) Groups() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	names := make([]string, 0, len(n.mu.groups))
	for name := range n.mu.groups {
		names = append(names, name)
	}
	return names
}

// Shutdown stops every group (without transferring leadership: call TransferLeadership first
// for a graceful handover), then the listener. Safe to call twice. The context bounds the
// wait; Raft shutdown itself is not interruptible, so on expiry the error is returned while
// it finishes in the background.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.mu.closed || !n.mu.started {
		n.mu.closed = true
		n.mu.Unlock()
		return nil
	}
	n.mu.closed = true
	groups := make([]*Group, 0, len(n.mu.groups))
	for _, g := range n.mu.groups {
		groups = append(groups, g)
	}
	n.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := g.close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := n.mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		n.log.Info("cluster node stopped")
		return err
	case <-ctx.Done():
		return fmt.Errorf("cluster: shutdown of node %s: %w", n.cfg.NodeID, ctx.Err())
	}
}

// groupDir is <DataDir>/raft/<group>.
func (n *Node) groupDir(group string) (string, error) {
	dir := filepath.Join(n.raftDir, group)
	if err := diskfs.MkdirAll(n.cfg.FS, dir); err != nil {
		return "", fmt.Errorf("cluster: create %s: %w", dir, err)
	}
	return dir, nil
}

// HasGroupState reports whether this node's data directory already holds Raft state for
// group (a node that has been a member before), before the group is opened.
func (n *Node) HasGroupState(group string) (bool, error) {
	return diskfs.Exists(n.cfg.FS, filepath.Join(n.raftDir, group))
}
