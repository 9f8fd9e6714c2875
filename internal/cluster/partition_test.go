package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPartitionedLeaderCannotCommit cuts the leader of s0 off from the others: it cannot
// commit (Apply fails) while the majority elects a new leader and commits; after the heal
// the old leader follows the new one and every replica holds the same state.
func TestPartitionedLeaderCannotCommit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	const group = "s0"
	want := entries("before", 0, 10)
	for _, e := range want {
		c.apply(group, e)
	}
	old := c.waitLeader(group)
	var majority []string
	for _, id := range c.ids() {
		if id != old.id {
			majority = append(majority, id)
		}
	}
	cut := time.Now()
	c.faults.Partition(old.id)

	// The minority leader accepts the command into its log but can never commit it.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	_, err := old.node.Group(group).Apply(ctx, []byte("minority"))
	cancel()
	if err == nil {
		t.Fatalf("Apply on partitioned leader %s succeeded; a minority must not commit", old.id)
	}
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Apply on partitioned leader %s = %v, want not-leader or outcome-unknown", old.id, err)
	}
	t.Logf("minority Apply: %v", err)

	leader := c.waitLeader(group, majority...)
	took := time.Since(cut)
	t.Logf("failover: majority elected %s %v after the leader was cut off", leader.id, took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("a silent leader was replaced after %v, want under 5s", took)
	}
	after := entries("majority", 0, 10)
	for _, e := range after {
		c.apply(group, e)
	}
	want = append(want, after...)
	c.waitConverged(group, want, majority...)
	if got, _ := old.fsms[group].state(); slices.Contains(got, "majority-0000") {
		t.Fatalf("partitioned %s applied an entry committed by the majority while cut off", old.id)
	}

	c.faults.Heal()
	waitFor(t, 10*time.Second, "old leader to follow "+leader.id, func() error {
		g := old.node.Group(group)
		if g.IsLeader() {
			return errors.New("still leader")
		}
		if l := g.Leader(); l.ID != leader.id {
			return fmt.Errorf("names leader %q", l.ID)
		}
		return nil
	})
	c.waitConverged(group, want)
}
