package cluster

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// nopFSM applies nothing: the benchmark measures Raft's own path.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// BenchmarkOneVoterApply measures Group.Apply on a one-voter group (what a plain `dmq
// server` would run every publish through, see docs/design/cluster.md) with an FSM that
// does nothing and 1 KiB commands, each entry fsynced by the bbolt store:
//
//	sequential: one caller, one Apply at a time (ns/op is the latency of a commit);
//	parallel:   64 callers per CPU, so raft batches entries (ns/op is per command).
//
// Compare with seglog's BenchmarkAppendLatency1KiB and BenchmarkAppend1KiB, the log a
// publish goes through today.
//
//	go test -run '^$' -bench OneVoterApply -benchtime 2000x ./internal/cluster
func BenchmarkOneVoterApply(b *testing.B) {
	n, err := New(Config{ClusterID: "bench", NodeID: "n1", DataDir: b.TempDir(), ListenAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(); err != nil {
		b.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	g, err := n.OpenGroup(GroupConfig{Name: "s0", FSM: nopFSM{}})
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !g.IsLeader() {
		if time.Now().After(deadline) {
			b.Fatal("the one-voter group did not elect itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd := make([]byte, 1024)
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		for range b.N {
			if _, err := g.Apply(ctx, cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(64)
		var once sync.Once
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := g.Apply(ctx, cmd); err != nil {
					once.Do(func() { b.Error(err) })
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "applies/s")
	})
}
