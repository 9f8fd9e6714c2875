package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
)

// Leaders are spread over the nodes so that every node serves a share of the shards:
// shard i prefers the first node of its placement (the i-th member in the order of their
// ids, modulo their number; see shard.Placement), unless an operator chose its leader
// (dmq cluster transfer-leader --to, kept in the shard's metadata until a transfer
// without --to). A node leading a shard it is not preferred for hands the leadership to
// the preferred node once that node is a healthy voter, one shard at a time, and not in a
// new leader's first seconds. When the preferred node is down the shard stays where the
// election put it; when it is back, the shard moves home.

const (
	// balanceInterval is how often a node looks at the shards it leads.
	balanceInterval = 2 * time.Second
	// balanceSettle is how long a new leader keeps the shard before handing it on, so
	// that a node that has just restarted is caught up and leadership does not bounce.
	balanceSettle = 5 * time.Second
)

// balanceOnce hands on the leadership of at most one shard.
func (c *clusterNode) balanceOnce() {
	placements := c.placements(c.members())
	for i, sh := range c.shardList() {
		sh.mu.Lock()
		leading, since := sh.mu.leading != nil, sh.mu.since
		sh.mu.Unlock()
		if !leading || time.Since(since) < balanceSettle {
			continue
		}
		want := sh.preferredLeader(placements[i])
		if want == "" || want == c.s.cfg.NodeID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := sh.group.TransferLeadership(ctx, want)
		cancel()
		switch {
		case errors.Is(err, cluster.ErrTransferTooSoon):
			c.s.logger.Debug("cluster: shard not handed to its preferred leader yet", "shard", sh.name, "to", want, "err", err)
			continue
		case err != nil:
			c.s.logger.Warn("cluster: could not hand the shard to its preferred leader", "shard", sh.name, "to", want, "err", err)
			continue
		}
		c.s.logger.Info("cluster: shard handed to its preferred leader", "shard", sh.name, "to", want)
		return
	}
}

// preferredLeader is the voter that should lead the shard, placed on the nodes placed,
// if it is healthy ("" if not, or if this node does not lead the shard).
func (sh *shardReplica) preferredLeader(placed []string) string {
	st := sh.group.Stats()
	var voters []string
	for _, srv := range st.Servers {
		if srv.Voter {
			voters = append(voters, srv.ID)
		}
	}
	want := ""
	if len(placed) > 0 && slices.Contains(voters, placed[0]) {
		want = placed[0]
	}
	sh.store.ReadMeta(func(ms *meta.Store) error {
		if pinned, err := ms.PinnedLeader(); err == nil && slices.Contains(voters, pinned) {
			want = pinned
		}
		return nil
	})
	if want == "" || want == st.Node {
		return want
	}
	for _, f := range st.Followers {
		if f.ID == want && f.Healthy {
			return want
		}
	}
	return ""
}
