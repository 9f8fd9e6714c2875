package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestReplicationAllGroups: three nodes host meta and two shards over one port each; every
// group elects a leader, replicates what its leader applies to all replicas, and a follower
// refuses Apply with an error naming the leader.
func TestReplicationAllGroups(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for _, group := range testGroups {
		leader := c.waitLeader(group)
		g := leader.node.Group(group)
		want := entries(group, 0, 20)
		for i, e := range want {
			resp, err := g.Apply(context.Background(), []byte(e))
			if err != nil {
				t.Fatalf("%s: Apply(%s) on leader %s: %v", group, e, leader.id, err)
			}
			if resp != i+1 {
				t.Fatalf("%s: Apply(%s) returned %v, want the FSM's position %d", group, e, resp, i+1)
			}
		}
		c.waitConverged(group, want)

		for _, tn := range c.live() {
			if tn == leader {
				continue
			}
			_, err := tn.node.Group(group).Apply(context.Background(), []byte("on-follower"))
			var nle *NotLeaderError
			if !errors.As(err, &nle) || !errors.Is(err, ErrNotLeader) {
				t.Fatalf("%s: Apply on follower %s = %v, want a *NotLeaderError", group, tn.id, err)
			}
			if nle.LeaderID != leader.id || nle.LeaderAddr != leader.addr || nle.MaybeApplied {
				t.Fatalf("%s: follower %s error names leader %q at %q (maybe applied %v), want %q at %q", group, tn.id, nle.LeaderID, nle.LeaderAddr, nle.MaybeApplied, leader.id, leader.addr)
			}
			t.Logf("follower error: %v", err)
		}

		st := g.Stats()
		if st.State != "Leader" || st.CommitIndex < uint64(len(want)) || st.AppliedIndex < uint64(len(want)) || len(st.Followers) != 2 {
			t.Fatalf("%s: leader stats %+v: want Leader, commit and applied index >= %d, 2 followers", group, st, len(want))
		}
		for _, f := range st.Followers {
			if !f.Healthy {
				t.Errorf("%s: follower %s reported unhealthy on a healthy cluster", group, f.ID)
			}
		}
		select {
		case l := <-g.LeaderChanges():
			if l.ID != leader.id {
				t.Fatalf("%s: LeaderChanges first value %+v, want %s", group, l, leader.id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: LeaderChanges gave nothing while %s leads", group, leader.id)
		}
	}
	// The three groups share one listener per node: each node hosts every group on its
	// single address.
	for _, tn := range c.live() {
		if tn.node.Addr() != tn.addr {
			t.Fatalf("node %s advertises %s, want its one listener %s", tn.id, tn.node.Addr(), tn.addr)
		}
	}
}
