package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// expanderFunc is a SnapshotExpander for tests.
type expanderFunc func(dir string, desc []byte) (int64, io.ReadCloser, error)

func (f expanderFunc) ExpandSnapshot(dir string, desc []byte) (int64, io.ReadCloser, error) {
	return f(dir, desc)
}

// The store offers its sinks' directory; a snapshot written by reference keeps the files
// put there and is expanded on Open, with the expanded size; one written in full is read
// as stored; snapshots half written before a crash are removed with their files. On the
// OS's file system, where the replica package's expander reads the linked files.
func TestRefSnapshotStore(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "snapshots")
	stale := filepath.Join(path, "1-2-3.tmp")
	if err := os.MkdirAll(filepath.Join(stale, "topics"), 0o755); err != nil {
		t.Fatal(err)
	}
	var gotDir, gotDesc string
	s, err := newSnapshotStore(vfs.Default, base, 2, nil, expanderFunc(func(dir string, desc []byte) (int64, io.ReadCloser, error) {
		gotDir, gotDesc = dir, string(desc)
		b, err := os.ReadFile(filepath.Join(dir, "data"))
		return int64(len(b)), io.NopCloser(bytes.NewReader(b)), err
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("a half-written snapshot survived: %v", err)
	}
	create := func(index uint64) raft.SnapshotSink {
		sink, err := s.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sink
	}

	sink := create(10)
	dir := sink.(SnapshotDir).Dir()
	if !strings.HasSuffix(dir, ".tmp") {
		t.Fatalf("sink directory %s", dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("the full state"), 0o644); err != nil {
		t.Fatal(err)
	}
	io.WriteString(sink, SnapshotRefsMagic+`{"plan":1}`)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := s.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "the full state" || meta.Size != int64(len(got)) || gotDesc != `{"plan":1}` || gotDir != strings.TrimSuffix(dir, ".tmp") {
		t.Fatalf("expanded %q (size %d) from %q in %s", got, meta.Size, gotDesc, gotDir)
	}

	sink = create(20)
	io.WriteString(sink, "a full snapshot")
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err = s.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if string(got) != "a full snapshot" || meta.Size != int64(len(got)) {
		t.Fatalf("a full snapshot read back as %q (size %d)", got, meta.Size)
	}
}

// testSnapshotConfig is a configuration of three voters and a nonvoter, and a transport
// that encodes their addresses (the meta's Peers).
func testSnapshotConfig(t *testing.T) (raft.Configuration, raft.Transport) {
	_, trans := raft.NewInmemTransport("a:1")
	t.Cleanup(func() { trans.Close() })
	return raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "a", Address: "a:1"},
		{Suffrage: raft.Voter, ID: "b", Address: "b:1"},
		{Suffrage: raft.Nonvoter, ID: "c", Address: "c:1"},
		{Suffrage: raft.Voter, ID: "d", Address: "d:1"},
	}}, trans
}

// writeSnapshot writes a snapshot of state at index and term into store, in pieces of
// uneven sizes, and returns its ID.
func writeSnapshot(t *testing.T, store raft.SnapshotStore, index, term uint64, state []byte) string {
	t.Helper()
	conf, trans := testSnapshotConfig(t)
	sink, err := store.Create(raft.SnapshotVersionMax, index, term, conf, index-1, trans)
	if err != nil {
		t.Fatal(err)
	}
	for rest, n := state, 1; len(rest) > 0; n *= 3 {
		k := min(n, len(rest))
		if _, err := sink.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

// readSnapshot opens snapshot id of store and returns its meta and state.
func readSnapshot(t *testing.T, store raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatalf("open snapshot %s: %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read snapshot %s: %v", id, err)
	}
	return meta, b
}

// snapshotState is n bytes of state, different for each seed.
func snapshotState(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// A snapshot written on a MemFS lists with its meta and reads back whole; files put in
// its sink's directory move with it.
func TestSnapshotStoreRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s, err := newSnapshotStore(fs, "/g", 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("a new store lists %v, %v", list, err)
	}
	conf, trans := testSnapshotConfig(t)
	state := snapshotState(1, 300<<10+17) // several of the sink's buffers
	sink, err := s.Create(1, 42, 7, conf, 40, trans)
	if err != nil {
		t.Fatal(err)
	}
	dir := sink.(SnapshotDir).Dir()
	if want := "/g/snapshots/" + sink.ID() + ".tmp"; dir != want {
		t.Fatalf("sink directory %s, want %s", dir, want)
	}
	f, err := fs.Create(fs.PathJoin(dir, "extra"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n, err := sink.Write(state); n != len(state) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := sink.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if _, err := fs.Stat("/g/snapshots/" + sink.ID() + "/extra"); err != nil {
		t.Fatalf("a file of the sink's directory did not move with the snapshot: %v", err)
	}

	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	m := list[0]
	if m.ID != sink.ID() || m.Index != 42 || m.Term != 7 || m.ConfigurationIndex != 40 || m.Version != 1 ||
		m.Size != int64(len(state)) || len(m.Configuration.Servers) != 4 || len(m.Peers) == 0 {
		t.Fatalf("listed %+v", m)
	}
	meta, got := readSnapshot(t, s, m.ID)
	if !bytes.Equal(got, state) || meta.Size != int64(len(state)) {
		t.Fatalf("read back %d bytes (size %d), wrote %d", len(got), meta.Size, len(state))
	}

	// A store opened again reads it.
	s2, err := newSnapshotStore(fs, "/g", 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, got := readSnapshot(t, s2, m.ID); !bytes.Equal(got, state) {
		t.Fatal("a reopened store reads another state")
	}
	if _, _, err := s2.Open("../snapshots"); err == nil {
		t.Fatal("Open of a path outside the store succeeded")
	}
	if _, err := newSnapshotStore(fs, "/g", 0, nil, nil); err == nil {
		t.Fatal("a store retaining no snapshot opened")
	}
}

// Snapshots list newest first by term, index and ID, at most retain of them; a Close
// removes all but the retain newest. Directories being written, without a readable
// meta.json, or of an unsupported version are left out and not reaped.
func TestSnapshotStoreRetain(t *testing.T) {
	fs := vfs.NewMem()
	s, err := newSnapshotStore(fs, "/g", 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"1-99-1.tmp", "5-500-1", "6-600-1"} {
		if err := fs.MkdirAll("/g/snapshots/"+name, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := fs.Create("/g/snapshots/6-600-1/meta.json", vfs.WriteCategoryUnspecified)
	f.Write([]byte(`{"Version":9,"ID":"6-600-1","Index":600,"Term":6}` + "\n"))
	f.Close()

	a := writeSnapshot(t, s, 10, 1, []byte("a"))
	b := writeSnapshot(t, s, 5, 2, []byte("b")) // a later term, a lower index
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].ID != b || list[1].ID != a {
		t.Fatalf("List = %v, %v; want %s, %s", ids(list), err, b, a)
	}
	c := writeSnapshot(t, s, 20, 2, []byte("c"))
	list, err = s.List()
	if err != nil || len(list) != 2 || list[0].ID != c || list[1].ID != b {
		t.Fatalf("List = %v, %v; want %s, %s", ids(list), err, c, b)
	}
	names, _ := fs.List("/g/snapshots")
	slices.Sort(names)
	want := []string{"1-99-1.tmp", b, c, "5-500-1", "6-600-1"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("snapshots directory holds %v, want %v", names, want)
	}
	if _, got := readSnapshot(t, s, b); string(got) != "b" {
		t.Fatalf("snapshot %s reads %q", b, got)
	}
}

func ids(list []*raft.SnapshotMeta) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.ID)
	}
	return out
}

// Cancel removes the snapshot being written, and the files put in its directory.
func TestSnapshotStoreCancel(t *testing.T) {
	fs := vfs.NewMem()
	s, err := newSnapshotStore(fs, "/g", 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := writeSnapshot(t, s, 10, 1, []byte("a"))
	sink, err := s.Create(1, 20, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.MkdirAll(fs.PathJoin(sink.(SnapshotDir).Dir(), "topics"), 0o755); err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("half a snapshot"))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close after Cancel: %v", err)
	}
	if names, _ := fs.List("/g/snapshots"); len(names) != 1 || names[0] != a {
		t.Fatalf("after Cancel the snapshots directory holds %v, want %s", names, a)
	}
	if list, err := s.List(); err != nil || len(list) != 1 || list[0].ID != a {
		t.Fatalf("List = %v, %v", ids(list), err)
	}
}

// Open refuses a state.bin that does not match the CRC in meta.json, naming the file.
func TestSnapshotStoreRefusesDamagedState(t *testing.T) {
	fs := vfs.NewMem()
	s, err := newSnapshotStore(fs, "/g", 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	state := snapshotState(2, 10000)
	id := writeSnapshot(t, s, 10, 1, state)
	path := "/g/snapshots/" + id + "/state.bin"
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{state[5000] ^ 0x10}, 5000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = s.Open(id)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Open of a damaged snapshot: %v; want an error naming %s", err, path)
	}
	t.Log(err)

	// Cut short.
	f, _ = fs.Create(path, vfs.WriteCategoryUnspecified)
	f.Write(state[:4096])
	f.Close()
	if _, _, err := s.Open(id); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a truncated snapshot: %v", err)
	}
}

// Snapshots written by hashicorp/raft's FileSnapshotStore are listed and opened by
// snapshotStore, and the reverse: data directories written before need no migration.
func TestSnapshotStoreReadsFileSnapshotStore(t *testing.T) {
	state := snapshotState(3, 100<<10+3)
	metaJSON := func(t *testing.T, dir, id string) map[string]any {
		b, err := os.ReadFile(filepath.Join(dir, "snapshots", id, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "ID") // the time of its creation
		return m
	}
	same := func(t *testing.T, got, want *raft.SnapshotMeta) {
		t.Helper()
		g, w := *got, *want
		if g.ID != w.ID || g.Index != w.Index || g.Term != w.Term || g.Version != w.Version || g.Size != w.Size ||
			g.ConfigurationIndex != w.ConfigurationIndex || !bytes.Equal(g.Peers, w.Peers) ||
			!slices.Equal(g.Configuration.Servers, w.Configuration.Servers) {
			t.Fatalf("meta %+v, want %+v", g, w)
		}
	}

	raftDir, ourDir := t.TempDir(), t.TempDir()
	theirs, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	id := writeSnapshot(t, theirs, 10, 3, state)
	ours, err := newSnapshotStore(vfs.Default, raftDir, 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ours.List()
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List of FileSnapshotStore's snapshot %s: %v, %v", id, ids(list), err)
	}
	theirList, _ := theirs.List()
	same(t, list[0], theirList[0])
	if meta, got := readSnapshot(t, ours, id); !bytes.Equal(got, state) {
		t.Fatalf("read back %d bytes of FileSnapshotStore's %d", len(got), len(state))
	} else {
		same(t, meta, theirList[0])
	}

	ours, err = newSnapshotStore(vfs.Default, ourDir, 2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ourID := writeSnapshot(t, ours, 10, 3, state)
	theirs, err = raft.NewFileSnapshotStoreWithLogger(ourDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	theirList, err = theirs.List()
	if err != nil || len(theirList) != 1 || theirList[0].ID != ourID {
		t.Fatalf("FileSnapshotStore lists %v, %v; want %s", ids(theirList), err, ourID)
	}
	list, _ = ours.List()
	same(t, theirList[0], list[0])
	if meta, got := readSnapshot(t, theirs, ourID); !bytes.Equal(got, state) {
		t.Fatalf("FileSnapshotStore read back %d bytes of %d", len(got), len(state))
	} else {
		same(t, meta, list[0])
	}
	if got, want := metaJSON(t, ourDir, ourID), metaJSON(t, raftDir, id); !reflect.DeepEqual(got, want) {
		t.Fatalf("meta.json\n%v\nFileSnapshotStore's\n%v", got, want)
	}
}

// crashFS is a crashable MemFS that takes crash clones, through crash, before each of
// the changes made through it and its files.
type crashFS struct {
	*vfs.MemFS
	crash func()
}

func (c crashFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	c.crash()
	f, err := c.MemFS.Create(name, cat)
	return crashFile{f, c.crash}, err
}

func (c crashFS) OpenDir(name string) (vfs.File, error) {
	f, err := c.MemFS.OpenDir(name)
	return crashFile{f, c.crash}, err
}

func (c crashFS) MkdirAll(dir string, perm os.FileMode) error {
	c.crash()
	return c.MemFS.MkdirAll(dir, perm)
}

func (c crashFS) Rename(from, to string) error {
	c.crash()
	return c.MemFS.Rename(from, to)
}

func (c crashFS) Remove(name string) error {
	c.crash()
	return c.MemFS.Remove(name)
}

func (c crashFS) RemoveAll(name string) error {
	c.crash()
	return c.MemFS.RemoveAll(name)
}

type crashFile struct {
	vfs.File
	crash func()
}

func (f crashFile) Write(p []byte) (int, error) {
	f.crash()
	return f.File.Write(p)
}

func (f crashFile) Sync() error {
	f.crash()
	return f.File.Sync()
}

// A power cut at any point while a snapshot is written, put in place, or the one before
// reaped leaves a store that lists the last snapshot whose Close returned, or the one being
// written if it was in place, and opens it whole; the half-written one is gone when the
// store opens again. Each point is tried with nothing unsynced surviving, everything
// surviving, and seeded coin flips in between.
func TestSnapshotStoreSurvivesPowerCuts(t *testing.T) {
	for _, retain := range []int{1, 2} { // with a snapshot reaped by the Close, and without
		t.Run(fmt.Sprintf("retain%d", retain), func(t *testing.T) { testSnapshotPowerCuts(t, retain) })
	}
}

func testSnapshotPowerCuts(t *testing.T, retain int) {
	mem := vfs.NewCrashableMem()
	type crash struct {
		fs      *vfs.MemFS
		durable string // the newest snapshot whose Close had returned
		at      int
	}
	var (
		crashes []crash
		durable string
		rng     = rand.New(rand.NewPCG(7, 7))
	)
	fs := crashFS{MemFS: mem}
	fs.crash = func() {
		at := len(crashes)
		crashes = append(crashes,
			crash{mem.CrashClone(vfs.CrashCloneCfg{}), durable, at},
			crash{mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}), durable, at},
			crash{mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), durable, at})
	}
	s, err := newSnapshotStore(fs, "/g", retain, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string][]byte{}
	state := snapshotState(4, 150<<10+5)
	a := writeSnapshot(t, s, 10, 1, state)
	states[a], durable = state, a

	// The next one: crashes while it is written (the sink's writes), closed, put in place,
	// and while the first is reaped.
	state = snapshotState(5, 200<<10+9)
	b := writeSnapshot(t, s, 20, 1, state)
	states[b], durable = state, b
	fs.crash()

	// And one abandoned half written.
	sink, err := s.Create(1, 30, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write(snapshotState(6, 100<<10))
	fs.crash()

	sawTmp, sawB := false, false
	for _, c := range crashes {
		names, _ := c.fs.List("/g/snapshots")
		for _, name := range names {
			sawTmp = sawTmp || strings.HasSuffix(name, ".tmp")
		}
		s, err := newSnapshotStore(c.fs, "/g", retain, nil, nil)
		if c.durable == "" {
			continue // the store's directory itself may be gone
		}
		if err != nil {
			t.Fatalf("crash %d: reopen: %v", c.at, err)
		}
		names, _ = c.fs.List("/g/snapshots")
		for _, name := range names {
			if strings.HasSuffix(name, ".tmp") {
				t.Fatalf("crash %d: %s survived the reopen", c.at, name)
			}
		}
		list, err := s.List()
		if err != nil || len(list) == 0 {
			t.Fatalf("crash %d after %s was closed: List = %v, %v\n%s", c.at, c.durable, ids(list), err, c.fs)
		}
		newest := list[0].ID
		if newest != c.durable && !(c.durable == a && newest == b) {
			t.Fatalf("crash %d after %s was closed lists %s first", c.at, c.durable, newest)
		}
		sawB = sawB || (c.durable == a && newest == b)
		if _, got := readSnapshot(t, s, newest); !bytes.Equal(got, states[newest]) {
			t.Fatalf("crash %d: snapshot %s reads back another state", c.at, newest)
		}
	}
	if !sawTmp || !sawB {
		t.Fatalf("%d crashes: a half-written snapshot seen %v, the next in place before its Close returned %v", len(crashes), sawTmp, sawB)
	}
	t.Logf("%d crash clones", len(crashes))
}
