package cluster

import (
	"context"
	"github.com/hashicorp/raft"
	"time"
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
