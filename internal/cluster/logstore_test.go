package cluster

import (
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
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
