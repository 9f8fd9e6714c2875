package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestLeaderFailoverAndRestart stops the node leading meta: every group it led gets a new
// leader within 5 s (measured), nothing committed is lost, the survivors keep committing, and
// the stopped node, restarted from its data dir, rejoins with all of it.
func TestLeaderFailoverAndRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	want := make(map[string][]string)
	for _, group := range testGroups {
		c.waitLeader(group)
		want[group] = entries(group, 0, 30)
		for _, e := range want[group] {
			c.apply(group, e)
		}
	}
	old := c.waitLeader("meta")
	ledByOld := []string{}
	for _, group := range testGroups {
		if old.node.Group(group).IsLeader() {
			ledByOld = append(ledByOld, group)
		}
	}
	stopped := time.Now()
	c.stop(old.id)
	var others []string
	for _, id := range c.ids() {
		others = append(others, id)
	}
	for _, group := range ledByOld {
		leader := c.waitLeader(group, others...)
		took := time.Since(stopped)
		t.Logf("failover: group %s led by %s %v after %s was stopped", group, leader.id, took.Round(time.Millisecond), old.id)
		if took > 5*time.Second {
			t.Errorf("group %s: new leader after %v, want under 5s", group, took)
		}
	}
	for _, group := range testGroups {
		c.waitConverged(group, want[group], others...)
		more := entries(group+"-after", 0, 10)
		for _, e := range more {
			c.apply(group, e)
		}
		want[group] = append(want[group], more...)
		c.waitConverged(group, want[group], others...)
	}

	c.restart(old.id)
	for _, group := range testGroups {
		c.waitConverged(group, want[group])
		c.waitLeader(group)
	}
	// The restarted node is a working replica again: it can lead.
	g := c.node(old.id).node.Group("meta")
	waitFor(t, 15*time.Second, "restarted node to lead meta", func() error {
		if g.IsLeader() {
			return nil
		}
		leader := c.waitLeader("meta")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := leader.node.Group("meta").TransferLeadership(ctx, old.id); err != nil {
			return fmt.Errorf("transfer from %s: %w", leader.id, err)
		}
		if !g.IsLeader() {
			return errors.New("transfer done, not leader yet")
		}
		return nil
	})
	if _, err := g.Apply(context.Background(), []byte("from-restarted")); err != nil {
		t.Fatalf("Apply on restarted leader %s: %v", old.id, err)
	}
	c.waitConverged("meta", append(slices.Clone(want["meta"]), "from-restarted"))
}
