package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// The log fsyncs each append batch, unless the user opted out (--no-sync): then its
// segments are written and never synced, and the entries still read back.
func TestLogSyncsUnlessOptedOut(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		var syncs atomic.Int64
		counting := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && strings.HasSuffix(op.Path, ".wal") {
				syncs.Add(1)
			}
			return nil
		}))
		dir := t.TempDir()
		store, err := openLogStore(dir, 1<<20, counting, noSync, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= 10; i++ {
			if err := store.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("entry")}}); err != nil {
				t.Fatal(err)
			}
		}
		var got raft.Log
		if err := store.GetLog(10, &got); err != nil || string(got.Data) != "entry" {
			t.Fatalf("noSync=%v: entry 10 = %q, %v", noSync, got.Data, err)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		switch n := syncs.Load(); {
		case noSync && n != 0:
			t.Errorf("with noSync the segments were synced %d times", n)
		case !noSync && n < 10:
			t.Errorf("10 appends synced the segments %d times, want one per append", n)
		}
	}
	if v := logVFS(vfs.Default, true); !isUnsynced(v) {
		t.Errorf("logVFS(noSync) = %T, want the unsynced file system", v)
	}
}

// A crash between sealing a full segment and recording the seal (raft-wal rotates in
// the background) leaves a tail sealed on disk only. The log must still take appends
// after a restart, and keep every entry: raft-wal v0.4.0 alone fails each append with
// "segment is sealed" from then on. A power cut in the write of the batch that seals the
// segment leaves its index frame without the commit frame after it, whole or torn: the
// batch was never acknowledged, and the log must open without it, unsealed, and take
// appends (raft-wal's recovery takes the frame for a seal: the log refused to open).
func TestLogRecoversARotationCutByACrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  int64 // bytes cut from the end of the sealed segment
		lost bool  // the sealing entry is gone
	}{
		{name: "rotation cut short"},
		{name: "seal without its commit", cut: 8, lost: true},
		{name: "torn index", cut: 8 + 12, lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const segBytes = 64 << 10
			entry := func(i uint64) *raft.Log {
				return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 10<<10)}
			}
			open := func() *walStore {
				s, err := openLogStore(dir, segBytes, vfs.Default, false, hclog.NewNullLogger())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			// Entries 1-5 in the first segment, which is not full yet; keep its meta file.
			s := open()
			next := uint64(1)
			for ; next <= 5; next++ {
				if err := s.StoreLogs([]*raft.Log{entry(next)}); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			metaFile := filepath.Join(dir, walMetaFile)
			before, err := os.ReadFile(metaFile)
			if err != nil {
				t.Fatal(err)
			}
			// The entry that fills it seals it; the rotation records the seal and a new tail.
			s = open()
			for {
				if err := s.StoreLogs([]*raft.Log{entry(next)}); err != nil {
					t.Fatal(err)
				}
				next++
				time.Sleep(50 * time.Millisecond) // the rotation runs in the background
				if files, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(files) > 1 {
					break // the last entry sealed the first segment; the new one is empty
				}
			}
			s.Close()
			// The crash: the meta file as before the rotation, the new tail never created.
			files, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
			slices.Sort(files)
			for _, f := range files[1:] {
				os.Remove(f)
			}
			if err := os.WriteFile(metaFile, before, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.cut > 0 {
				fi, err := os.Stat(files[0])
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(files[0], fi.Size()-tc.cut); err != nil {
					t.Fatal(err)
				}
			}
			if tc.lost {
				next-- // the sealing entry; it is appended again
			}

			s = open()
			defer s.Close()
			if last, err := s.LastIndex(); err != nil || last != next-1 {
				t.Fatalf("last index after the restart: %d, %v; want %d", last, err, next-1)
			}
			if err := s.StoreLogs([]*raft.Log{entry(next)}); err != nil {
				t.Fatalf("append after the restart: %v", err)
			}
			for i := uint64(1); i <= next; i++ {
				var got raft.Log
				if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
					t.Fatalf("entry %d after the restart: %v", i, err)
				}
			}
		})
	}
}

// A segment the log created but had not synced into when it was closed (the new tail
// after a cut of the log's tail) is reopened for appends: once they are acknowledged,
// the segment survives a power cut. raft-wal's file system syncs the directory only for
// files it creates, so the file and its entries could vanish.
func TestLogKeepsASegmentReopenedBeforeItsFirstSync(t *testing.T) {
	mem := vfs.NewCrashableMem()
	const dir = "/raft/g/wal"
	open := func(fs vfs.FS) *walStore {
		s, err := openLogStore(dir, 1<<20, fs, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}}
	}
	s := open(mem)
	for i := uint64(1); i <= 5; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteRange(4, 5); err != nil { // a new, empty tail for entries from 4 on
		t.Fatal(err)
	}
	s.Close()
	s = open(mem)
	for i := uint64(4); i <= 6; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cut := mem.CrashClone(vfs.CrashCloneCfg{}) // only what was synced
	s.Close()
	s = open(cut)
	defer s.Close()
	if last, err := s.LastIndex(); err != nil || last != 6 {
		t.Fatalf("last index after a power cut: %d, %v; want 6", last, err)
	}
}

// A follower that cuts its log's tail (Raft's "clearing log suffix", after a leader
// change) and restarts must read its whole log again. raft-wal v0.4.0 recorded the cut
// segment as sealed without writing its index, so every later start failed in
// raft.NewRaft with "sealed segment has no index block": the node was lost for good.
func TestLogReadsBackAfterItsTailWasCut(t *testing.T) {
	dir := t.TempDir()
	open := func() *walStore {
		s, err := openLogStore(dir, 1<<20, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	entry := func(i, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i), byte(term)}}
	}
	s := open()
	for i := uint64(1); i <= 20; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	// The new leader's log differs from 15 on: the follower cuts 15-20 and takes 15-17 of term 2.
	if err := s.DeleteRange(15, 20); err != nil {
		t.Fatal(err)
	}
	for i := uint64(15); i <= 17; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i, 2)}); err != nil {
			t.Fatal(err)
		}
	}
	for restart := range 2 {
		s.Close()
		s = open()
		for i := uint64(1); i <= 17; i++ {
			want := entry(i, 1)
			if i >= 15 {
				want = entry(i, 2)
			}
			var got raft.Log
			if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("restart %d: entry %d = %v, %v; want %v", restart+1, i, got.Data, err, want.Data)
			}
		}
		if last, err := s.LastIndex(); err != nil || last != 17 {
			t.Fatalf("restart %d: last index %d, %v; want 17", restart+1, last, err)
		}
	}
	s.Close()
}

// Logs that earlier builds left damaged start again: a segment recorded as sealed without
// its index (raft-wal v0.4.0 after a cut tail) or with an index past its file's end (an
// append that failed half-way) is resealed, with every entry kept. A segment that lost
// entries the log counts is refused with the file and the remedy, and nothing panics.
func TestLogRepairsOrRefusesDamagedSeals(t *testing.T) {
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 10<<10)}
	}
	// fill writes 1..n in 64 KiB segments and returns the dir and the meta state.
	fill := func(t *testing.T, n uint64) string {
		dir := t.TempDir()
		s, err := openLogStore(dir, 64<<10, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= n; i++ {
			if err := s.StoreLogs([]*raft.Log{entry(i)}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // raft-wal rotates in the background
		s.Close()
		return dir
	}
	damage := func(t *testing.T, dir string, edit func(si *types.SegmentInfo)) types.SegmentInfo {
		meta := newWalMeta(vfs.Default, hclog.NewNullLogger())
		defer meta.Close()
		state, err := meta.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(state.Segments) < 3 {
			t.Fatalf("%d segments, want at least 3", len(state.Segments))
		}
		edit(&state.Segments[1])
		if err := meta.CommitState(state); err != nil {
			t.Fatal(err)
		}
		return state.Segments[1]
	}
	readAll := func(t *testing.T, dir string, n uint64) {
		for restart := range 2 {
			s, err := openLogStore(dir, 64<<10, vfs.Default, false, hclog.NewNullLogger())
			if err != nil {
				t.Fatalf("start %d: %v", restart+1, err)
			}
			for i := uint64(1); i <= n; i++ {
				var got raft.Log
				if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
					s.Close()
					t.Fatalf("start %d: entry %d: %v", restart+1, i, err)
				}
			}
			s.Close()
		}
	}
	t.Run("sealed without index", func(t *testing.T) {
		dir := fill(t, 30)
		damage(t, dir, func(si *types.SegmentInfo) { si.IndexStart = 0 })
		readAll(t, dir, 30)
	})
	t.Run("index past the file's end", func(t *testing.T) {
		dir := fill(t, 30)
		damage(t, dir, func(si *types.SegmentInfo) { si.IndexStart = 1 << 30 })
		readAll(t, dir, 30)
	})
	t.Run("entries lost", func(t *testing.T) {
		dir := fill(t, 30)
		si := damage(t, dir, func(si *types.SegmentInfo) { si.IndexStart = 0 })
		file := filepath.Join(dir, segment.FileName(si))
		if err := os.Truncate(file, 20<<10); err != nil { // the frames after the first two entries are gone
			t.Fatal(err)
		}
		_, err := openLogStore(dir, 64<<10, vfs.Default, false, hclog.NewNullLogger())
		if !errors.Is(err, ErrDamagedLog) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "remedy") {
			t.Fatalf("start over a segment that lost entries: %v; want ErrDamagedLog naming %s and the remedy", err, file)
		}
		t.Log(err)
	})
}

func isUnsynced(v types.VFS) bool {
	_, ok := v.(unsyncedVFS)
	return ok
}
