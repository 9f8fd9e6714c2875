package replica

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
)

// BenchmarkLeaderAppendLatency is one append at a time through a one-voter group (W2's
// path without the broker and the network): the Raft log's write and fsync, the apply
// to the topic log, the report. The nosync case leaves out the fsync, whose time
// varies more than the hand-offs between goroutines cost.
func BenchmarkLeaderAppendLatency(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		name := "fsync"
		if noSync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) { benchmarkLeaderAppendLatency(b, noSync) })
	}
}

func benchmarkLeaderAppendLatency(b *testing.B, noSync bool) {
	dir := b.TempDir()
	s, err := Open(Options{DataDir: filepath.Join(dir, "replica")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	node, err := cluster.New(cluster.Config{ClusterID: "test", NodeID: "n1", DataDir: filepath.Join(dir, "node"), ListenAddr: "127.0.0.1:0", NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	if err := node.Start(); err != nil {
		b.Fatal(err)
	}
	defer node.Shutdown(context.Background()) // before the store closes
	g, err := node.OpenGroup(cluster.GroupConfig{Name: "s0", FSM: s, DurableFSM: true})
	if err != nil {
		b.Fatal(err)
	}
	s.Attach(g)
	for deadline := time.Now().Add(10 * time.Second); !g.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("a one-voter group elected no leader")
		}
	}
	l, err := s.OpenLog("dev.a.b", s.opts.Log)
	if err != nil {
		b.Fatal(err)
	}
	st := s.Storage(g.Term())
	payload := [][]byte{make([]byte, 128)}
	done := make(chan error, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.Append("dev.a.b", l, payload, func(_ uint64, err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
