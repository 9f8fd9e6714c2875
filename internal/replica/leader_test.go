package replica

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
)

// oneVoterStore opens a store as the state machine of a one-voter group that leads.
func oneVoterStore(t *testing.T) (*Store, *cluster.Group) {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "replica"))
	t.Cleanup(func() { s.Close() })
	node, err := cluster.New(cluster.Config{ClusterID: "test", NodeID: "n1", DataDir: filepath.Join(dir, "node"), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Shutdown(context.Background()) }) // before the store closes
	g, err := node.OpenGroup(cluster.GroupConfig{Name: "s0", FSM: s, DurableFSM: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Attach(g)
	deadline := time.Now().Add(10 * time.Second)
	for !g.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !g.IsLeader() {
		t.Fatal("a one-voter group elected no leader")
	}
	return s, g
}

// Appends are reported in the order they were proposed, as a single node's log reports
// them: the broker's duplicate window keeps a producer's ids as runs only when their
// batches settle in order.
func TestAppendsAreReportedInProposalOrder(t *testing.T) {
	s, g := oneVoterStore(t)
	l, err := s.OpenLog("dev.a.b", s.opts.Log)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	st := s.Storage(g.Term())
	var mu sync.Mutex
	var reported []uint64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		st.Append("dev.a.b", l, payloads(i, 1), func(first uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("append: %v", err)
			}
			mu.Lock()
			reported = append(reported, first)
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, off := range reported {
		if off != uint64(i) {
			t.Fatalf("report %d is of offset %d: appends reported out of order (%v...)", i, off, reported[max(0, i-3):min(len(reported), i+3)])
		}
	}
}

// A broker's storage writes only in the term its leadership began: once the group is in
// another term, appends, retention and removals are refused as not-leader errors (so
// that the node opens a new broker), and nothing reaches the log.
func TestLeaderStorageWritesOnlyInItsTerm(t *testing.T) {
	s, g := oneVoterStore(t)
	l, err := s.OpenLog("dev.a.b", s.opts.Log)
	if err != nil {
		t.Fatal(err)
	}
	appendVia := func(st LeaderStorage) error {
		done := make(chan error, 1)
		st.Append("dev.a.b", l, payloads(0, 3), func(_ uint64, err error) { done <- err })
		return <-done
	}
	term := g.Term()
	if err := appendVia(s.Storage(term)); err != nil {
		t.Fatalf("append in the current term: %v", err)
	}
	stale := s.Storage(term - 1)
	if err := appendVia(stale); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("append in an earlier term: %v, want a not-leader error", err)
	}
	if _, err := stale.DeleteSegmentsBefore("dev.a.b", l, 3); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("retention in an earlier term: %v", err)
	}
	if err := stale.RemoveLog("dev.a.b", l); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("removal in an earlier term: %v", err)
	}
	if n := l.Next() - l.First(); n != 3 {
		t.Fatalf("the log holds %d records, want the 3 of the current term", n)
	}
}
