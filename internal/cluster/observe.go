package cluster

import (
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
