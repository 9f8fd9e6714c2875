package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dmqio/dmq/internal/cluster/transport"
)

// Defaults suit nodes on one machine or a LAN: a dead leader is noticed within one to two
// heartbeat timeouts and replaced within about two seconds.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 10 * time.Second
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
	DefaultTransportTimeout   = 10 * time.Second
	DefaultMaxPool            = 3
)

// Config configures a Node. Zero values mean the defaults above.
type Config struct {
	// ClusterID names the cluster; nodes refuse connections naming another one, and a data
	// directory records it on first start.
	ClusterID string
	// NodeID names this node; it is the Raft server id in every group.
	NodeID string
	// DataDir holds <DataDir>/raft/identity and <DataDir>/raft/<group>/.
	DataDir string
	// FS is the file system every file of the node goes through (nil: the OS's).
	// Tests cut the power of an in-memory one (package faultfs).
	FS vfs.FS

	// ListenAddr is the cluster listener, shared by all groups ("host:port"). Ignored when
	// Listener is set.
	ListenAddr string
	// Listener, when set, is used instead of listening on ListenAddr (tests pass a listener
	// already bound to 127.0.0.1:0 so that the peers list can be built race-free). The node
	// closes it on shutdown.
	Listener net.Listener
	// AdvertiseAddr is the address peers dial to reach this node. Empty means this node's
	// address in Peers, else the listener's address (set it when listening on a wildcard
	// address such as 0.0.0.0:7431 without Peers, e.g. before nodes join).
	AdvertiseAddr string

	// Peers is the initial configuration of every group, this node included. All nodes
	// started with the same list bootstrap the same configuration. Empty means a one-voter
	// cluster of this node alone.
	Peers []Peer
	// Join starts the node without bootstrapping: its groups wait to be added to an existing
	// cluster (Group.AddVoter on the leaders).
	Join bool

	// Raft timing; see hashicorp/raft Config. LeaderLeaseTimeout must not exceed
	// HeartbeatTimeout, and ElectionTimeout must not be below it.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotThreshold is how many log entries since the last snapshot make a group take one
	// (checked every SnapshotInterval); TrailingLogs is how many entries a snapshot leaves in
	// the log for slow followers. SnapshotRetain snapshots are kept on disk.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	SnapshotRetain    int
	// LogSegmentBytes is the size of the Raft log's segment files (default 64 MiB);
	// compaction removes whole segments only, so the log keeps up to one segment more
	// than TrailingLogs.
	LogSegmentBytes int
	// NoSync leaves the Raft log's appends unsynced (the user's --no-sync): a
	// commit then means a quorum wrote the entry, not that it is on their disks,
	// and a power loss on a majority can lose acknowledged entries.
	NoSync bool

	// TransportTimeout is the I/O deadline of Raft RPCs; MaxPool the idle connections kept
	// per peer and group.
	TransportTimeout time.Duration
	MaxPool          int

	// Logger receives the node's and hashicorp/raft's logs (with group and node fields); nil
	// discards them. RaftLogLevel filters raft's own lines (default Info).
	Logger       *slog.Logger
	RaftLogLevel slog.Level

	// Faults turns on fault injection in the transport (tests only); nil costs nothing.
	Faults *transport.Faults

	// TLS and DialTLS, when set, secure the cluster port: accepted connections are TLS
	// servers with TLS (require and verify client certificates for mutual TLS), dialled
	// ones TLS clients with DialTLS (see transport.Config).
	TLS, DialTLS *tls.Config
}

// withDefaults returns a copy with zero values replaced.
func (c Config) withDefaults() Config {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	set(&c.ElectionTimeout, DefaultElectionTimeout)
	set(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	set(&c.CommitTimeout, DefaultCommitTimeout)
	set(&c.SnapshotInterval, DefaultSnapshotInterval)
	set(&c.TransportTimeout, DefaultTransportTimeout)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain <= 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.MaxPool <= 0 {
		c.MaxPool = DefaultMaxPool
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AdvertiseAddr == "" {
		for _, p := range c.Peers {
			if p.ID == c.NodeID {
				c.AdvertiseAddr = p.Addr
			}
		}
	}
	return c
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if err := validateID("cluster id", c.ClusterID); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := validateID("node id", c.NodeID); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("cluster: a data dir is required")
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
			return fmt.Errorf("cluster: listen address %q: %v", c.ListenAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := validateAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("cluster: advertise address: %w", err)
		}
	}
	if len(c.Peers) > 0 {
		// Re-check what ParsePeers checks, for peers built in code.
		if _, err := ParsePeers(FormatPeers(c.Peers)); err != nil {
			return err
		}
		var self *Peer
		for i := range c.Peers {
			if c.Peers[i].ID == c.NodeID {
				self = &c.Peers[i]
			}
		}
		if self == nil {
			return fmt.Errorf("cluster: node %q is not in the peers list %s; every node's list must include itself", c.NodeID, FormatPeers(c.Peers))
		}
		if c.AdvertiseAddr != "" && c.AdvertiseAddr != self.Addr {
			return fmt.Errorf("cluster: node %q advertises %s but the peers list gives it %s", c.NodeID, c.AdvertiseAddr, self.Addr)
		}
	}
	if c.Join && len(c.Peers) > 0 {
		return errors.New("cluster: a joining node takes no peers list: the cluster it joins has its configuration")
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout && c.HeartbeatTimeout > 0 {
		return fmt.Errorf("cluster: leader lease timeout %s exceeds heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout > 0 && c.HeartbeatTimeout > 0 && c.ElectionTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("cluster: election timeout %s is below heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	return nil
}
