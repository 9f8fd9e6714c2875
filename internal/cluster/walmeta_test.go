package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
)

// The meta store behaves as raft-wal's bbolt one: the same state on a first Load, the
// same stable values (missing is nil, nil deletes, empty stays empty), and what was
// committed or set is there after a reopen.
func TestWalMetaActsAsRaftWals(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T, dir string) types.MetaStore
	}{
		{"bbolt", func(t *testing.T, dir string) types.MetaStore { return &metadb.BoltMetaDB{} }},
		{"walMeta on vfs.Default", func(t *testing.T, dir string) types.MetaStore {
			return newWalMeta(vfs.Default, hclog.NewNullLogger())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := tc.open(t, dir)
			state, err := m.Load(dir)
			if err != nil || state.NextSegmentID != 0 || state.Segments != nil {
				t.Fatalf("first Load = %+v, %v; want the zero state", state, err)
			}
			if v, err := m.GetStable([]byte("CurrentTerm")); v != nil || err != nil {
				t.Fatalf("GetStable of a missing key = %q, %v; want nil, nil", v, err)
			}
			want := types.PersistentState{NextSegmentID: 3, Segments: []types.SegmentInfo{
				{ID: 1, BaseIndex: 1, MinIndex: 1, MaxIndex: 9, IndexStart: 100, Codec: 1, SizeLimit: 1 << 20,
					CreateTime: time.Unix(1, 2).UTC(), SealTime: time.Unix(3, 4).UTC()},
				{ID: 2, BaseIndex: 10, MinIndex: 10, Codec: 1, SizeLimit: 1 << 20, CreateTime: time.Unix(5, 6).UTC()},
			}}
			steps := []error{
				m.CommitState(want),
				m.SetStable([]byte("CurrentTerm"), []byte{0, 0, 0, 0, 0, 0, 0, 7}),
				m.SetStable([]byte("LastVoteCand"), []byte("n2")),
				m.SetStable([]byte("empty"), []byte{}),
				m.SetStable([]byte("gone"), []byte("x")),
				m.SetStable([]byte("gone"), nil),
				m.Close(),
			}
			if err := errors.Join(steps...); err != nil {
				t.Fatal(err)
			}
			m = tc.open(t, dir)
			defer m.Close()
			got, err := m.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Segments) != 2 || got.NextSegmentID != 3 || got.Segments[0] != want.Segments[0] || got.Segments[1] != want.Segments[1] {
				t.Fatalf("Load after reopen = %+v, want %+v", got, want)
			}
			for key, value := range map[string][]byte{
				"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 7}, "LastVoteCand": []byte("n2"), "empty": {}, "gone": nil,
			} {
				v, err := m.GetStable([]byte(key))
				if err != nil || !bytes.Equal(v, value) || (v == nil) != (value == nil) {
					t.Errorf("GetStable(%s) = %q (nil %v), %v; want %q (nil %v)", key, v, v == nil, err, value, value == nil)
				}
			}
		})
	}
}

// A data directory written by the build before this one (raft-wal's file system and its
// bbolt meta database wal-meta.db) opens with every entry, term and vote, and its meta
// database is moved into the meta file once: the bbolt file is gone, and the log opens
// from the new file after that.
func TestLogMovesItsBoltMetaDatabase(t *testing.T) {
	dir := t.TempDir()
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1 + i/100, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, int(i%50)*40)}
	}
	// The previous build's log: 300 entries over several segments, a cut tail, a term and a vote.
	w, err := wal.Open(dir, wal.WithMetaStore(&metadb.BoltMetaDB{}), wal.WithSegmentSize(32<<10))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i++ {
		if err := w.StoreLogs([]*raft.Log{entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(w.DeleteRange(281, 300), w.SetUint64([]byte("CurrentTerm"), 4),
		w.Set([]byte("LastVoteCand"), []byte("n3")), w.SetUint64([]byte("LastVoteTerm"), 4)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // raft-wal rotates in the background
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	for start := range 2 {
		s, err := openLogStore(dir, 32<<10, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatalf("start %d: %v", start+1, err)
		}
		if _, err := os.Stat(filepath.Join(dir, metadb.FileName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("start %d: %s is still there (%v)", start+1, metadb.FileName, err)
		}
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 1 || last != 280 {
			t.Errorf("start %d: entries %d-%d, want 1-280", start+1, first, last)
		}
		for i := uint64(1); i <= 280; i++ {
			var got raft.Log
			if err := s.GetLog(i, &got); err != nil || got.Term != entry(i).Term || !bytes.Equal(got.Data, entry(i).Data) {
				t.Fatalf("start %d: entry %d: %v", start+1, i, err)
			}
		}
		term, err1 := s.GetUint64([]byte("CurrentTerm"))
		cand, err2 := s.Get([]byte("LastVoteCand"))
		voteTerm, err3 := s.GetUint64([]byte("LastVoteTerm"))
		if term != 4 || string(cand) != "n3" || voteTerm != 4 || errors.Join(err1, err2, err3) != nil {
			t.Errorf("start %d: term %d, vote %q in term %d (%v); want 4, n3, 4", start+1, term, cand, voteTerm,
				errors.Join(err1, err2, err3))
		}
		if start == 0 {
			if err := s.StoreLogs([]*raft.Log{entry(281)}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(281, 281); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A move cut short after the meta file was written leaves the bbolt file behind: the
// meta file wins and the bbolt file is removed. A damaged meta file is refused with its
// name and the remedy, and nothing panics.
func TestWalMetaFileMovedOrDamaged(t *testing.T) {
	newDir := func(t *testing.T) string {
		dir := t.TempDir()
		s, err := openLogStore(dir, 32<<10, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}}),
			s.SetUint64([]byte("CurrentTerm"), 2), s.Close()); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("bbolt file left behind", func(t *testing.T) {
		dir := newDir(t)
		stale := &metadb.BoltMetaDB{}
		if _, err := stale.Load(dir); err != nil { // creates an empty wal-meta.db
			t.Fatal(err)
		}
		stale.Close()
		s, err := openLogStore(dir, 32<<10, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if last, _ := s.LastIndex(); last != 1 {
			t.Errorf("last index %d, want 1", last)
		}
		if term, _ := s.GetUint64([]byte("CurrentTerm")); term != 2 {
			t.Errorf("term %d, want 2", term)
		}
		if _, err := os.Stat(filepath.Join(dir, metadb.FileName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", metadb.FileName, err)
		}
	})
	t.Run("newest slot torn", func(t *testing.T) {
		// A write cut by a power cut was not acknowledged: the other slot, the state
		// before it, is the state.
		dir := newDir(t)
		file := filepath.Join(dir, walMetaFile)
		_, _, seq, err := readWalMeta(vfs.Default, file)
		if err != nil || seq < 2 {
			t.Fatalf("meta file: seq %d, %v; want 2 writes at least", seq, err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b[int(seq%2)*walMetaSlot+walMetaHeaderLen+1] ^= 1
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, got, err := readWalMeta(vfs.Default, file); err != nil || got != seq-1 {
			t.Fatalf("after the newest slot (%d) was torn: seq %d, %v; want %d", seq, got, err, seq-1)
		}
		s, err := openLogStore(dir, 32<<10, vfs.Default, false, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"a flipped bit in each slot", func(b []byte) []byte {
			b[walMetaHeaderLen+1] ^= 1
			b[walMetaSlot+walMetaHeaderLen+1] ^= 1
			return b
		}},
		{"cut short", func(b []byte) []byte { return b[:walMetaHeaderLen/2] }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			file := filepath.Join(dir, walMetaFile)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = openLogStore(dir, 32<<10, vfs.Default, false, hclog.NewNullLogger())
			if !errors.Is(err, ErrDamagedLog) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "remedy") {
				t.Fatalf("open over a damaged meta file: %v; want ErrDamagedLog naming %s and the remedy", err, file)
			}
		})
	}
}

// TestTermSavedOnAFullDisk: hashicorp/raft panics when it cannot save a term or vote,
// so the meta store must save them on a disk without a free byte (it rewrites a slot of
// its file in place; a new file renamed over it took a node down on a full disk).
func TestTermSavedOnAFullDisk(t *testing.T) {
	disk := faultfs.New()
	s, err := openLogStore("/wal", 32<<10, disk, false, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	disk.SetCapacity(disk.Used())
	for term := uint64(2); term < 6; term++ {
		if err := s.SetUint64([]byte("CurrentTerm"), term); err != nil {
			t.Fatalf("save term %d on a full disk: %v", term, err)
		}
	}
	if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != 5 {
		t.Fatalf("term %d, %v; want 5", got, err)
	}
}
