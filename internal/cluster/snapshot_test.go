package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// snapshotTuning makes groups snapshot and compact after a few dozen entries.
func snapshotTuning(cfg *Config) {
	cfg.SnapshotThreshold = 32
	cfg.TrailingLogs = 8
	cfg.SnapshotInterval = 50 * time.Millisecond
	cfg.LogSegmentBytes = 4096 // compaction removes whole segments
}

// TestSnapshotCatchUp keeps a node away while the others commit past the snapshot threshold
// and compact their logs: the node catches up by installing a snapshot (its FSM's Restore
// runs) and ends with the same state. Snapshots are kept two at a time.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, snapshotTuning)
	const group = "s1"
	leader := c.waitLeader(group)
	var away *testNode
	for _, tn := range c.live() {
		if tn != leader {
			away = tn
			break
		}
	}
	want := entries("early", 0, 5)
	for _, e := range want {
		c.apply(group, e)
	}
	c.waitConverged(group, want)

	c.faults.Partition(away.id)
	var rest []string
	for _, id := range c.ids() {
		if id != away.id {
			rest = append(rest, id)
		}
	}
	for round := range 3 {
		batch := entries("round"+string(rune('a'+round)), 0, 40)
		for _, e := range batch {
			c.apply(group, e)
		}
		want = append(want, batch...)
		// Force a snapshot too, so that the test does not depend on the interval timer.
		l := c.waitLeader(group, rest...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := l.node.Group(group).Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot on leader %s: %v", l.id, err)
		}
		cancel()
	}
	c.waitConverged(group, want, rest...)
	l := c.waitLeader(group, rest...)
	waitFor(t, 10*time.Second, "leader "+l.id+" to report "+away.id+" unhealthy", func() error {
		for _, f := range l.node.Group(group).Stats().Followers {
			if f.ID == away.id && !f.Healthy {
				return nil
			}
		}
		return fmt.Errorf("followers %+v", l.node.Group(group).Stats().Followers)
	})
	st := l.node.Group(group).Stats()
	if st.LastSnapshotIndex < uint64(len(want))/2 {
		t.Fatalf("leader %s: last snapshot index %d after %d entries; want a recent snapshot", l.id, st.LastSnapshotIndex, len(want))
	}
	snaps, err := os.ReadDir(filepath.Join(l.dir, "raft", group, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range snaps {
		if !strings.HasSuffix(e.Name(), ".tmp") { // one being written now
			kept = append(kept, e.Name())
		}
	}
	if len(kept) != DefaultSnapshotRetain {
		t.Fatalf("leader %s keeps snapshots %v, want %d", l.id, kept, DefaultSnapshotRetain)
	}
	if n := away.fsms[group].restores.Load(); n != 0 {
		t.Fatalf("node %s restored %d snapshots while cut off", away.id, n)
	}

	c.faults.Heal()
	c.waitConverged(group, want)
	if n := away.fsms[group].restores.Load(); n == 0 {
		t.Fatalf("node %s caught up without Restore: the leader's log was not compacted past it", away.id)
	}
	t.Logf("node %s caught up from a snapshot (%d restores)", away.id, away.fsms[group].restores.Load())
}

// TestLoneVoterKeepsFewEntriesAfterASnapshot: a group whose only member is this node keeps
// loneTrailingEntries after a snapshot, not the configured TrailingLogs (it has no
// follower to keep them for); once a second member is added it keeps TrailingLogs again.
func TestLoneVoterKeepsFewEntriesAfterASnapshot(t *testing.T) {
	const trailing = 1000
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.TrailingLogs = trailing
		cfg.LogSegmentBytes = 4096 // compaction removes whole segments
	})
	const group = "s1"
	g := c.waitLeader(group, "n1").node.Group(group)
	waitFor(t, 10*time.Second, "the lone voter's trailing entries", func() error {
		if got := g.raft.ReloadableConfig().TrailingLogs; got != loneTrailingEntries {
			return fmt.Errorf("TrailingLogs %d, want %d", got, loneTrailingEntries)
		}
		return nil
	})
	want := entries("lone", 0, 300)
	for _, e := range want {
		c.apply(group, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	st := g.Stats()
	if kept := st.LastLogIndex - st.FirstLogIndex + 1; kept > loneTrailingEntries+64 { // plus one segment's worth
		t.Fatalf("after a snapshot at %d the log keeps %d entries (%d to %d), want about %d", st.LastSnapshotIndex, kept, st.FirstLogIndex, st.LastLogIndex, loneTrailingEntries)
	}

	n2 := c.addNode("n2")
	if err := g.AddVoter(ctx, n2.id, n2.addr); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(group, want)
	waitFor(t, 10*time.Second, "the configured trailing entries back", func() error {
		if got := g.raft.ReloadableConfig().TrailingLogs; got != trailing {
			return fmt.Errorf("TrailingLogs %d with two members, want %d", got, trailing)
		}
		return nil
	})
}
