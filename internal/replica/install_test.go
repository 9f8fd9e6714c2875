package replica

import (
	"bytes"
	"math"
	"path/filepath"
	"testing"

	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/hashicorp/raft"
)

// An install of a leader's snapshot cut short by a crash: a start finishes one whose
// files were all durable (marked complete), at any point of its swap, and discards one
// that was not; the replica then holds the old state whole or the new one whole, and
// its StateIndex says which.
func TestAnInstallCutShortIsFinishedOrUndone(t *testing.T) {
	_, snap, _ := snapshotThenAppend(t)
	stream := persist(t, snap).Bytes()

	for _, tc := range []struct {
		name string
		// cut leaves the staged install as a crash would.
		cut      func(t *testing.T, s *Store)
		finished bool
	}{
		{"staged, not marked complete", func(t *testing.T, s *Store) {
			if err := s.fs.Remove(filepath.Join(s.restoreDir(), restoreComplete)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"marked complete", func(*testing.T, *Store) {}, true},
		{"meta swapped, topics not", func(t *testing.T, s *Store) {
			live := filepath.Join(s.opts.DataDir, "meta")
			if err := s.fs.RemoveAll(live); err != nil {
				t.Fatal(err)
			}
			if err := s.fs.Rename(filepath.Join(s.restoreDir(), "meta"), live); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			if got := s.StateIndex(); got != 0 {
				t.Fatalf("a new replica's state index is %d, want 0", got)
			}
			apply(t, s, &raft.Log{Index: 1, Data: encodeAppend("dev.x.y", 0, payloads(0, 1))})
			if err := s.stage(bytes.NewReader(stream), s.restoreDir()); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.cut(t, s) // closed: the state as a crash left it

			s = openStore(t, dir)
			defer s.Close()
			if ok, _ := diskfs.Exists(s.fs, s.restoreDir()); ok {
				t.Fatal("the staging directory is still there after a start")
			}
			own, _ := diskfs.Exists(s.fs, s.topicDir("dev.x.y"))
			if covers, err := s.CoversSnapshot(bytes.NewReader(stream)); err != nil || covers != tc.finished {
				t.Fatalf("CoversSnapshot = %v, %v; want %v", covers, err, tc.finished)
			}
			if tc.finished {
				if own {
					t.Fatal("the replica's own topic survived a finished install")
				}
				if got := s.StateIndex(); got != 4 {
					t.Fatalf("state index %d after the install, want the snapshot's 4", got)
				}
				checkLog(t, s, "dev.a.b", 9)
				return
			}
			if !own {
				t.Fatal("the replica lost its own state to an install that was undone")
			}
			if got := s.StateIndex(); got != 0 {
				t.Fatalf("state index %d after an undone install, want 0", got)
			}
		})
	}
}

// The state index follows the snapshots the replica persists itself; a data directory
// that predates it is trusted to cover every snapshot, as before.
func TestStateIndexFollowsSnapshots(t *testing.T) {
	leader, snap, _ := snapshotThenAppend(t)
	persist(t, snap)
	if got := leader.StateIndex(); got != 4 {
		t.Fatalf("state index %d after persisting a snapshot at 4", got)
	}
	dir := leader.opts.DataDir
	leader.Close()
	reopened := openStore(t, dir)
	if got := reopened.StateIndex(); got != 4 {
		t.Fatalf("state index %d after a restart, want 4", got)
	}
	reopened.Close()
	if err := reopened.fs.Remove(filepath.Join(dir, stateIndexFile)); err != nil {
		t.Fatal(err)
	}
	legacy := openStore(t, dir)
	defer legacy.Close()
	if got := legacy.StateIndex(); got != math.MaxUint64 {
		t.Fatalf("state index %d for data that predates the record, want every snapshot covered", got)
	}
}
