package cluster

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Stats is a replica's view of its group, for the admin API, /metrics and tests.
type Stats struct {
	Group string
	Node  string
	State string // "Follower", "Candidate", "Leader" or "Shutdown"
	Term  uint64
	// FirstLogIndex is the oldest entry still in the log (compaction moves it up): a
	// member that needs an older one gets a snapshot.
	FirstLogIndex uint64
	LastLogIndex  uint64
	CommitIndex   uint64
	AppliedIndex  uint64
	// LastSnapshotIndex is the index covered by the latest snapshot (0: none yet).
	LastSnapshotIndex uint64
	// LastContact is when a follower last heard from its leader; zero on the leader.
	LastContact time.Time
	Leader      Leader
	Servers     []Server
	// ConfigIndex is the index of the log entry that set Servers (the latest
	// configuration this replica has, committed or not): of two views of the members, the
	// one with the higher index is the newer.
	ConfigIndex uint64
	// Followers is filled on the leader, one entry per other member.
	Followers []FollowerStats
}

// FollowerStats is the leader's view of one follower.
//
// hashicorp/raft does not expose a follower's match index, so the lag in entries is not
// known here; the cluster status command gets it by asking each replica for its
// LastLogIndex. What the leader does know is whether heartbeats reach the follower.
type FollowerStats struct {
	ID   string
	Addr string
	// Healthy is false while heartbeats to the follower fail.
	Healthy bool
	// LastContact is the follower's last successful contact when its heartbeats began
	// failing; zero while healthy.
	LastContact time.Time
}

// Stats returns the replica's current statistics.
func (g *Group) Stats() Stats {
	st := Stats{
		Group:        g.name,
		Node:         g.node.cfg.NodeID,
		State:        g.raft.State().String(),
		Term:         g.raft.CurrentTerm(),
		LastLogIndex: g.raft.LastIndex(),
		CommitIndex:  g.raft.CommitIndex(),
		AppliedIndex: g.raft.AppliedIndex(),
		Leader:       g.Leader(),
	}
	if n, err := g.store.FirstIndex(); err == nil {
		st.FirstLogIndex = n
	}
	if n, err := strconv.ParseUint(g.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
		st.LastSnapshotIndex = n
	}
	leader := g.raft.State() == raft.Leader
	if !leader {
		st.LastContact = g.raft.LastContact()
	}
	if f := g.raft.GetConfiguration(); f.Error() == nil {
		st.ConfigIndex = f.Index()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, s := range f.Configuration().Servers {
			srv := Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter}
			st.Servers = append(st.Servers, srv)
			if leader && srv.ID != st.Node {
				at, failing := g.mu.failingAt[srv.ID]
				st.Followers = append(st.Followers, FollowerStats{ID: srv.ID, Addr: srv.Addr, Healthy: !failing, LastContact: at})
			}
		}
	}
	return st
}
