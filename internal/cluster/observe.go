package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// observeLoop turns raft's observations into leader-change notifications and follower
// health. It wakes on each observation raft sends (leader changes, heartbeat failures and
// recoveries, membership changes) and stops when the group closes.
func (g *Group) observeLoop() {
	for {
		select {
		case <-g.quit:
			return
		case o := <-g.obsCh:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				l := Leader{ID: string(d.LeaderID), Addr: string(d.LeaderAddr)}
				g.log.Info("leader changed", "leader", l.ID, "leader_addr", l.Addr)
				g.publishLeader(l)
				if string(d.LeaderID) == g.node.cfg.NodeID {
					g.goFunc(g.recordOwnAddress)
					g.goFunc(g.fitTrailingEntries)
				}
				g.mu.Lock()
				clear(g.mu.failingAt)
				g.mu.Unlock()
			case raft.FailedHeartbeatObservation:
				g.mu.Lock()
				if _, ok := g.mu.failingAt[string(d.PeerID)]; !ok {
					g.mu.failingAt[string(d.PeerID)] = d.LastContact
				}
				g.mu.Unlock()
			case raft.ResumedHeartbeatObservation:
				g.mu.Lock()
				delete(g.mu.failingAt, string(d.PeerID))
				g.mu.Unlock()
			case raft.PeerObservation:
				g.goFunc(g.fitTrailingEntries) // the members changed
				// Removed, or added (again): a failure seen by the replication of its
				// earlier membership, which may report after the removal, is not its
				// health now; the new replication reports its own.
				g.mu.Lock()
				delete(g.mu.failingAt, string(d.Peer.ID))
				g.mu.Unlock()
			}
		}
	}
}

// publishLeader gives l to every subscriber, replacing a value not yet read.
func (g *Group) publishLeader(l Leader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ch := range g.mu.subs {
		select {
		case ch <- l:
			continue
		default:
		}
		select {
		case <-ch:
		default:
		}
		select {
		case ch <- l:
		default:
		}
	}
}

// recordOwnAddress runs when this node becomes the group's leader: if the group's
// configuration holds another address for it than the one it listens on now (it was
// restarted with another --cluster-listen, as a node started alone on loopback is when it
// grows into a cluster), it records the new one, so that the other members reach it
// there once it no longer leads.
func (g *Group) recordOwnAddress() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-g.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	servers, err := g.Configuration(ctx)
	if err != nil {
		return // no longer the leader: the next one records its own
	}
	self, now := g.node.cfg.NodeID, string(g.trans.LocalAddr())
	for _, s := range servers {
		if s.ID != self || s.Addr == now || !s.Voter {
			continue
		}
		if err := g.AddVoter(ctx, self, now); err != nil {
			g.log.Warn("cluster: could not record this node's new cluster address", "recorded", s.Addr, "now", now, "err", err)
			return
		}
		g.log.Info("cluster: recorded this node's new cluster address", "was", s.Addr, "now", now)
	}
}

// loneTrailingEntries is how many entries a snapshot leaves in the log of a group with a
// single member: they are kept for followers that fall behind, and it has none. A node
// added later catches up from the snapshot.
const loneTrailingEntries = 64

// fitTrailingEntries sets how many entries a snapshot leaves in the leader's log: the
// configured TrailingLogs while the group has other members, loneTrailingEntries while
// this node is its only one. A lone voter (a plain dmq server) would otherwise keep
// 10,240 entries after every snapshot, each up to a publish batch of megabytes: gigabytes
// of log beside its topic logs, for nobody.
func (g *Group) fitTrailingEntries() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers, err := g.Configuration(ctx)
	if err != nil {
		return
	}
	want := g.node.cfg.TrailingLogs
	if len(servers) == 1 && servers[0].ID == g.node.cfg.NodeID {
		want = min(want, loneTrailingEntries)
	}
	g.trailingMu.Lock() // one change at a time: the read and the reload are two steps
	defer g.trailingMu.Unlock()
	rc := g.raft.ReloadableConfig()
	if rc.TrailingLogs == want {
		return
	}
	rc.TrailingLogs = want
	if err := g.raft.ReloadConfig(rc); err != nil {
		g.log.Warn("cluster: could not change the entries kept after a snapshot", "trailing_entries", want, "err", err)
		return
	}
	g.log.Info("cluster: entries kept after a snapshot", "trailing_entries", want, "members", len(servers))
}
