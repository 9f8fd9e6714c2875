package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
)

// countingVFS is raft-wal's file system counting the Syncs of segment files.
type countingVFS struct {
	types.VFS
	syncs *atomic.Int64
}

func (v countingVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	return countingFile{f, v.syncs}, err
}

func (v countingVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	return countingFile{f, v.syncs}, err
}

type countingFile struct {
	types.WritableFile
	syncs *atomic.Int64
}

func (f countingFile) Sync() error {
	f.syncs.Add(1)
	return f.WritableFile.Sync()
}

// The log fsyncs each append batch, unless the user opted out (--no-sync): then its
// segments are written and never synced, and the entries still read back.
func TestLogSyncsUnlessOptedOut(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		var syncs atomic.Int64
		var vfs types.VFS = countingVFS{fs.New(), &syncs}
		if noSync {
			vfs = unsyncedVFS{vfs}
		}
		dir := t.TempDir()
		store, err := openLogStore(dir, 1<<20, vfs, hclog.NewNullLogger())
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
	if _, ok := logVFS(true).(unsyncedVFS); !ok {
		t.Errorf("logVFS(true) = %T, want the unsynced file system", logVFS(true))
	}
}

// A crash between sealing a full segment and recording the seal (raft-wal rotates in
// the background) leaves a tail sealed on disk only. The log must still take appends
// after a restart, and keep every entry: raft-wal v0.4.0 alone fails each append with
// "segment is sealed" from then on.
func TestLogRecoversARotationCutByACrash(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 64 << 10
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 10<<10)}
	}
	open := func() *walStore {
		s, err := openLogStore(dir, segBytes, logVFS(false), hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Entries 1-5 in the first segment, which is not full yet; keep its meta database.
	s := open()
	next := uint64(1)
	for ; next <= 5; next++ {
		if err := s.StoreLogs([]*raft.Log{entry(next)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	metaFile := filepath.Join(dir, metadb.FileName)
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
	// The crash: the meta database as before the rotation, the new tail never created.
	files, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	slices.Sort(files)
	for _, f := range files[1:] {
		os.Remove(f)
	}
	if err := os.WriteFile(metaFile, before, 0o644); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	if err := s.StoreLogs([]*raft.Log{entry(next)}); err != nil {
		t.Fatalf("append after the restart: %v", err)
	}
	for i := uint64(1); i <= next; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
			t.Fatalf("entry %d after the restart: %v", i, err)
		}
	}
}
