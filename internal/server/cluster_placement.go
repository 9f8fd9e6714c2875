package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/shard"
)

// Which nodes keep which shards. The cluster's members are shard s0's: every node keeps
// s0, and dmq cluster add-node and remove-node change s0 only. From the members and the
// replicas per shard, every node computes the same placement (shard.Placement; a member
// that has not answered for ReplaceAfter is replaced by the next live one,
// shard.PlacementAvoiding, until it answers again). Then
// every node, every reconcileInterval, brings what it can towards it:
//
//   - a shard's leader adds the placed nodes its group lacks as non-voters; promotes a
//     non-voter once it has caught up (it has applied what was committed a round
//     before); and once every placed node votes and answers, removes the members that
//     are no longer placed — itself last, by first handing the leadership to the
//     shard's preferred leader;
//   - a node placed on a shard it does not keep opens the shard's replica, empty and
//     waiting for the leader to add it (it then receives a snapshot and the log);
//   - a node that keeps a shard it is no longer placed on, once the shard's members no
//     longer include it, closes the replica and deletes its data.
//
// So a replica is dropped only after the group stopped counting on it, and a group
// shrinks only after its new members have the data. A node that does not keep a shard
// sends its calls to the shard's leader, which it learns from the others' info.

// reconcileInterval is how often a node compares the shards it keeps, and the groups it
// leads, with their placement.
const reconcileInterval = time.Second

// members is the cluster's members: s0's configuration as this node knows it.
func (c *clusterNode) members() []cluster.Server {
	return c.shard(0).group.Stats().Servers
}

// placements is, for every shard, the node ids that should keep it: shard.Placement
// over the members, with those unreachable for longer than ReplaceAfter replaced by the
// next live ones.
func (c *clusterNode) placements(members []cluster.Server) [][]string {
	ids := make([]string, len(members))
	for k, m := range members {
		ids[k] = m.ID
	}
	replicas := c.replicaCount()
	out := make([][]string, c.nShards)
	for i := range out {
		if c.s.cfg.ReplaceAfter <= 0 {
			out[i] = shard.Placement(i, ids, replicas)
		} else {
			out[i] = shard.PlacementAvoiding(i, ids, replicas, c.longGone)
		}
	}
	return out
}

// longGone reports whether member id has not answered this node for longer than
// ReplaceAfter (counted from this node's start for a member it never heard from).
func (c *clusterNode) longGone(id string) bool {
	if id == c.s.cfg.NodeID {
		return false
	}
	last := c.started
	if v, ok := c.peerBook.get(id); ok && v.at.After(last) {
		last = v.at
	}
	return time.Since(last) > c.s.cfg.ReplaceAfter
}

// replicaCount is how many nodes keep each shard but s0 (0: every node): as recorded in
// s0 (by its first leader, from its --replicas; changed by dmq cluster set-replicas), or
// this node's --replicas until then.
func (c *clusterNode) replicaCount() int {
	n, ok := 0, false
	err := c.shard(0).store.ReadMeta(func(ms *meta.Store) (err error) {
		n, ok, err = ms.Replicas()
		return err
	})
	if err == nil && ok {
		return n
	}
	return c.createdReplicas
}

// recordReplicas, on s0's leader, records the replicas per shard the cluster was
// created with, if s0 has none yet.
func (c *clusterNode) recordReplicas() error {
	ok := false
	err := c.shard(0).store.ReadMeta(func(ms *meta.Store) (err error) {
		_, ok, err = ms.Replicas()
		return err
	})
	if err != nil || ok {
		return err
	}
	return c.shard(0).store.Meta().SetReplicas(c.createdReplicas)
}

// reconcile makes one round of changes towards the placement (see above).
func (c *clusterNode) reconcile() {
	members := c.members()
	if !slices.ContainsFunc(members, func(m cluster.Server) bool { return m.ID == c.s.cfg.NodeID }) {
		return // not (yet) a member: a node waiting to be added, or removed
	}
	self := c.s.cfg.NodeID
	for i, placed := range c.placements(members) {
		sh := c.shard(i)
		switch {
		case !sh.hosted():
			if slices.Contains(placed, self) {
				c.host(i)
			}
		case sh.group.IsLeader():
			sh.reconcileMembers(placed, members)
		case i > 0 && !slices.Contains(placed, self) && sh.removed():
			c.drop(sh)
		}
	}
}

// host opens a replica of shard i, placed on this node, for its leader to add.
func (c *clusterNode) host(i int) {
	sh, err := c.openReplica(i, nil, true, nil)
	if err != nil {
		c.s.logger.Error("cluster: could not open a replica of a shard placed on this node; will retry", "shard", shard.Name(i), "err", err)
		if sh != nil {
			sh.store.Interrupt()
			c.node.CloseGroup(sh.name, false)
			sh.store.Close()
		}
		return
	}
	c.slots[i].Store(sh)
	c.startRoleLoop(sh)
	c.s.logger.Info("cluster: shard placed on this node; its replica waits for the leader to add it", "shard", sh.name)
}

// drop closes a replica the shard's group no longer has, and deletes its data.
func (c *clusterNode) drop(sh *shardReplica) {
	c.slots[sh.index].Store(&shardReplica{c: c, name: sh.name, index: sh.index})
	close(sh.quit)
	<-sh.done
	sh.follow()
	sh.uses.Lock()
	sh.dropped = true
	sh.uses.Unlock()
	sh.store.Interrupt()
	err := errors.Join(c.node.CloseGroup(sh.name, true), sh.store.Close())
	if err == nil {
		err = c.s.cfg.FS.RemoveAll(c.shardDir(sh.index))
	}
	if err != nil {
		c.s.logger.Error("cluster: closing a replica the shard no longer has", "shard", sh.name, "err", err)
		return
	}
	c.s.logger.Info("cluster: shard no longer placed on this node; its replica is deleted", "shard", sh.name)
}

// removed reports whether the shard's members no longer include this node: as its own
// replica knows them, or as the shard's leader last said.
func (sh *shardReplica) removed() bool {
	self := sh.c.s.cfg.NodeID
	if !slices.ContainsFunc(sh.group.Stats().Servers, func(s cluster.Server) bool { return s.ID == self }) {
		return true
	}
	v, ok := sh.c.leaderView(sh.name)
	return ok && !slices.ContainsFunc(v.info.Groups[sh.name].Servers, func(s cluster.Server) bool { return s.ID == self })
}

// reconcileMembers, on the shard's leader, makes one change towards the placement.
func (sh *shardReplica) reconcileMembers(placed []string, members []cluster.Server) {
	c := sh.c
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := sh.group.Stats()
	current := map[string]cluster.Server{}
	for _, srv := range st.Servers {
		current[srv.ID] = srv
	}
	addr := map[string]string{}
	for _, m := range members {
		addr[m.ID] = m.Addr
	}
	complete := true
	for _, id := range placed {
		srv, ok := current[id]
		switch {
		case !ok:
			complete = false
			if err := sh.group.AddNonvoter(ctx, id, addr[id]); err != nil {
				c.s.logger.Warn("cluster: could not add a replica to the shard", "shard", sh.name, "node", id, "err", err)
				return
			}
			c.s.logger.Info("cluster: replica added to the shard; it catches up before it votes", "shard", sh.name, "node", id)
		case !srv.Voter:
			complete = false
			// Against what this node's replica applied: configuration entries are
			// committed but not applied, so a replica of an idle group never reaches
			// a commit index that ends with one.
			if !c.caughtUp(sh.name, id, sh.store.AppliedIndex()) {
				continue
			}
			if err := sh.group.AddVoter(ctx, id, srv.Addr); err != nil {
				c.s.logger.Warn("cluster: could not make a caught-up replica a voter", "shard", sh.name, "node", id, "err", err)
				return
			}
			c.s.logger.Info("cluster: replica caught up and votes", "shard", sh.name, "node", id)
		case id != st.Node && !c.answers(id):
			complete = false // no member leaves while a placed one is away
		}
	}
	if !complete {
		return
	}
	for _, srv := range st.Servers {
		if slices.Contains(placed, srv.ID) {
			continue
		}
		if srv.ID == st.Node {
			// The new members have the data: hand on, and the next leader removes this node.
			if err := sh.group.TransferLeadership(ctx, placed[0]); err != nil {
				c.s.logger.Warn("cluster: could not hand on a shard no longer placed on this node", "shard", sh.name, "to", placed[0], "err", err)
			}
			return
		}
		if err := sh.group.RemoveServer(ctx, srv.ID); err != nil {
			c.s.logger.Warn("cluster: could not remove a replica no longer placed", "shard", sh.name, "node", srv.ID, "err", err)
			return
		}
		c.s.logger.Info("cluster: replica removed from the shard (no longer placed on its node)", "shard", sh.name, "node", srv.ID)
	}
}

// caughtUp reports whether node id's replica of the shard has applied what this node's
// had applied at the previous round (called once a round per replica catching up).
func (c *clusterNode) caughtUp(group, id string, applied uint64) bool {
	key := group + "/" + id
	target, seen := c.promotions[key]
	c.promotions[key] = applied
	v, ok := c.peerBook.get(id)
	if !seen || !ok || v.at.IsZero() || time.Since(v.at) > peerStale {
		return false
	}
	ri, ok := v.info.Groups[group]
	if !ok || ri.AppliedIndex < target {
		return false
	}
	delete(c.promotions, key)
	return true
}

// answers reports whether node id answered the info exchange recently.
func (c *clusterNode) answers(id string) bool {
	v, ok := c.peerBook.get(id)
	return ok && !v.at.IsZero() && time.Since(v.at) < peerStale && v.err == ""
}

// leaderView is what the node that leads group (in the highest term any node told)
// last said, among the nodes that answered the last time they were asked.
func (c *clusterNode) leaderView(group string) (peerView, bool) {
	c.peerBook.mu.Lock()
	defer c.peerBook.mu.Unlock()
	var best peerView
	found := false
	for _, v := range c.peerBook.peers {
		ri, ok := v.info.Groups[group]
		if !ok || v.at.IsZero() || time.Since(v.at) > peerStale || v.err != "" || ri.State != "Leader" {
			continue
		}
		if !found || ri.Term > best.info.Groups[group].Term {
			best, found = v, true
		}
	}
	return best, found
}

// leaderFromPeers is the leader of a shard this node does not keep, as the others say.
func (c *clusterNode) leaderFromPeers(group string) meta.Node {
	v, _ := c.leaderView(group) // zero if none is known
	return v.info.Node
}

// elsewhereStatus is a shard this node keeps no replica of, as its leader last told:
// its members and their positions as they told this node, their lag measured against
// what the leader had applied.
func (sh *shardReplica) elsewhereStatus() GroupStatus {
	gs := GroupStatus{Name: sh.name, Role: "none"}
	v, ok := sh.c.leaderView(sh.name)
	if !ok {
		return gs
	}
	li := v.info.Groups[sh.name]
	gs.Leader, gs.Term, gs.CommitIndex, gs.Servers = v.info.Node, li.Term, li.AppliedIndex, li.Servers
	for _, srv := range li.Servers {
		r := ReplicaStatus{ID: srv.ID, Voter: srv.Voter}
		if pv, ok := sh.c.peerBook.get(srv.ID); ok {
			ri := pv.info.Groups[sh.name]
			r.State, r.Term, r.LastLogIndex, r.AppliedIndex, r.Error = ri.State, ri.Term, ri.LastLogIndex, ri.AppliedIndex, pv.err
			if !pv.at.IsZero() {
				r.LastSeenMs, r.Lag = pv.at.UnixMilli(), li.AppliedIndex-min(ri.AppliedIndex, li.AppliedIndex)
				r.Reachable = time.Since(pv.at) < peerStale
			}
		}
		gs.Replicas = append(gs.Replicas, r)
	}
	return gs
}
