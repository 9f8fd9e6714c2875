package replica

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metaRepr is the batch a leader's meta.Store would replicate for PutTopic.
func metaRepr(t *testing.T, topic string) []byte {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set([]byte("t/"+topic), []byte(`{"name":"`+topic+`"}`), nil); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.Repr()...)
}

func payloads(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("message %d", from+i))
	}
	return out
}

// entries is a little replicated history: a topic record and three appends.
func entries(t *testing.T) []*raft.Log {
	return []*raft.Log{
		{Index: 1, Data: encodeMeta(metaRepr(t, "dev.a.b"))},
		{Index: 2, Data: encodeAppend("dev.a.b", 0, payloads(0, 3))},
		{Index: 3, Data: encodeAppend("dev.a.b", 3, payloads(3, 2))},
		{Index: 4, Data: encodeAppend("dev.a.b", 5, payloads(5, 4))},
	}
}

func apply(t *testing.T, s *Store, es ...*raft.Log) []any {
	t.Helper()
	var out []any
	for _, e := range es {
		out = append(out, s.Apply(e))
	}
	return out
}

func checkLog(t *testing.T, s *Store, topic string, want int) {
	t.Helper()
	l, err := s.OpenLog(topic, s.opts.Log)
	if err != nil {
		t.Fatal(err)
	}
	if l.Next() != uint64(want) {
		t.Fatalf("log of %s ends at %d, want %d", topic, l.Next(), want)
	}
	for i := 0; i < want; i++ {
		p, err := l.Read(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if string(p) != fmt.Sprintf("message %d", i) {
			t.Fatalf("offset %d holds %q", i, p)
		}
	}
}

func TestApplyIsIdempotentOnReplay(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	res := apply(t, s, entries(t)...)
	if res[1] != uint64(0) || res[2] != uint64(3) || res[3] != uint64(5) {
		t.Fatalf("append results %v, want offsets 0, 3, 5", res)
	}
	checkLog(t, s, "dev.a.b", 9)
	if s.Meta().AppliedIndex() != 1 {
		t.Fatalf("applied index %d, want 1", s.Meta().AppliedIndex())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart replays the whole log: nothing is applied twice.
	s = openStore(t, dir)
	defer s.Close()
	res = apply(t, s, entries(t)...)
	if res[1] != uint64(0) || res[3] != uint64(5) {
		t.Fatalf("replayed append results %v, want the original offsets", res)
	}
	checkLog(t, s, "dev.a.b", 9)
	topics, err := s.Meta().Topics()
	if err != nil || len(topics) != 1 {
		t.Fatalf("topics after replay: %v, %v", topics, err)
	}
}

func TestApplyAppendsOnlyTheMissingTail(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	apply(t, s, &raft.Log{Index: 1, Data: encodeAppend("dev.a.b", 0, payloads(0, 3))})
	// An entry overlapping what the log holds (a torn batch after a crash): only the
	// missing payloads are appended.
	if r := s.Apply(&raft.Log{Index: 2, Data: encodeAppend("dev.a.b", 1, payloads(1, 4))}); r != uint64(1) {
		t.Fatalf("overlapping append answered %v", r)
	}
	checkLog(t, s, "dev.a.b", 5)
}

func TestApplyRefusesGapAlike(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	apply(t, s, &raft.Log{Index: 1, Data: encodeAppend("dev.a.b", 0, payloads(0, 2))})
	r := s.Apply(&raft.Log{Index: 2, Data: encodeAppend("dev.a.b", 5, payloads(5, 1))})
	if err, ok := r.(error); !ok || !errors.Is(err, errGap) {
		t.Fatalf("append past the end answered %v, want a gap error", r)
	}
	checkLog(t, s, "dev.a.b", 2)
	// The log grows past the refused offset; replayed, the refused entry stays refused.
	apply(t, s, &raft.Log{Index: 3, Data: encodeAppend("dev.a.b", 2, payloads(2, 4))})
	if r := s.Apply(&raft.Log{Index: 2, Data: encodeAppend("dev.a.b", 5, payloads(5, 1))}); r == nil || !errors.Is(r.(error), errGap) {
		t.Fatalf("replayed refused append answered %v", r)
	}
	checkLog(t, s, "dev.a.b", 6)
	if err := s.Broken(); err != nil {
		t.Fatalf("a refusal marked the replica broken: %v", err)
	}
	// A refused append to a topic without a log makes no directory.
	s.Apply(&raft.Log{Index: 4, Data: encodeAppend("dev.none.x", 3, payloads(3, 1))})
	if _, err := os.Stat(filepath.Join(s.opts.DataDir, "topics", "dev.none.x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused append made a directory: %v", err)
	}
}

func TestApplyRejectsBadCommands(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	for name, data := range map[string][]byte{
		"empty":        nil,
		"version":      {9, kindMeta},
		"kind":         {commandVersion, 77},
		"short append": encodeAppend("dev.a.b", 0, payloads(0, 2))[:12],
		"path topic":   encodeRemove("../etc"),
		"slash topic":  encodeAppend("a/b", 0, payloads(0, 1)),
	} {
		if r := s.Apply(&raft.Log{Index: 1, Data: data}); r == nil {
			t.Errorf("%s: applied", name)
		} else if _, ok := r.(error); !ok {
			t.Errorf("%s: answered %v, want an error", name, r)
		}
	}
	if _, err := os.Stat(filepath.Join(s.opts.DataDir, "topics", "a")); err == nil {
		t.Fatal("a bad topic name created a directory")
	}
	// An entry this version cannot read leaves the replica unfit to lead.
	if s.Broken() == nil {
		t.Fatal("an unreadable committed entry did not mark the replica broken")
	}
}

func TestTrimAndRemove(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.opts.Log.SegmentBytes = 1 << 20
	big := bytes.Repeat([]byte("x"), 300<<10)
	for i := 0; i < 8; i++ {
		apply(t, s, &raft.Log{Index: uint64(i + 1), Data: encodeAppend("dev.a.b", uint64(i), [][]byte{big})})
	}
	l, _ := s.OpenLog("dev.a.b", s.opts.Log)
	if len(l.Segments()) < 2 {
		t.Fatalf("%d segments, want several", len(l.Segments()))
	}
	if n := s.Apply(&raft.Log{Index: 9, Data: encodeTrim("dev.a.b", 5)}); n == 0 {
		t.Fatalf("trim removed nothing (%v)", n)
	}
	if l.First() == 0 {
		t.Fatal("first offset still 0 after trim")
	}
	if r := s.Apply(&raft.Log{Index: 10, Data: encodeRemove("dev.a.b")}); r != nil {
		t.Fatalf("remove: %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", "dev.a.b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("topic directory still there: %v", err)
	}
}

// sink is a raft.SnapshotSink in memory.
type sink struct {
	bytes.Buffer
	canceled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.canceled = true; return nil }
func (s *sink) Close() error  { return nil }

// snapshotThenAppend applies entries to a new store, takes a snapshot and applies one
// more append, late, which the snapshot's copy of the logs may or may not hold: the
// replayed entry must leave a restored replica with it exactly once either way.
func snapshotThenAppend(t *testing.T) (leader *Store, snap raft.FSMSnapshot, late *raft.Log) {
	t.Helper()
	leader = openStore(t, t.TempDir())
	t.Cleanup(func() { leader.Close() })
	apply(t, leader, entries(t)...)
	snap, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	late = &raft.Log{Index: 5, Data: encodeAppend("dev.a.b", 9, payloads(9, 2))}
	apply(t, leader, late)
	return leader, snap, late
}

// persist writes snap out and releases it.
func persist(t *testing.T, snap raft.FSMSnapshot) *sink {
	t.Helper()
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return &out
}

func TestSnapshotRestoresAnotherReplica(t *testing.T) {
	_, snap, late := snapshotThenAppend(t)
	out := persist(t, snap)

	// A follower with divergent junk of its own gets the leader's state.
	follower := openStore(t, t.TempDir())
	defer follower.Close()
	apply(t, follower, &raft.Log{Index: 1, Data: encodeAppend("dev.x.y", 0, payloads(0, 1))})
	if err := follower.Restore(io.NopCloser(out)); err != nil {
		t.Fatal(err)
	}
	apply(t, follower, late)
	checkLog(t, follower, "dev.a.b", 11)
	if _, err := os.Stat(filepath.Join(follower.opts.DataDir, "topics", "dev.x.y")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the follower's own topic survived the restore")
	}
	topics, err := follower.Meta().Topics()
	if err != nil || len(topics) != 1 || topics[0].Name != "dev.a.b" {
		t.Fatalf("restored topics: %v, %v", topics, err)
	}
	if follower.Meta().AppliedIndex() != 1 {
		t.Fatalf("restored metadata applied index %d, want 1", follower.Meta().AppliedIndex())
	}
	if follower.AppliedIndex() != 5 {
		t.Fatalf("restored replica applied index %d, want 5 (4 at the snapshot, then the late entry)", follower.AppliedIndex())
	}
}

// TestMetaReadableWhileASnapshotIsRestored reads the metadata store, as a follower's
// placement and leader balancer do every second, while snapshots are installed over it:
// a node added under load panicked in meta.(*Store).Replicas right after installing one
// (the store was nil between closing the old state and opening the new). A restored
// replica reports the snapshot's index as applied at once.
func TestMetaReadableWhileASnapshotIsRestored(t *testing.T) {
	_, snap, _ := snapshotThenAppend(t)
	out := persist(t, snap)
	follower := openStore(t, t.TempDir())
	defer follower.Close()

	stop := make(chan struct{})
	errs := make(chan error, 1)
	reads := 0
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := follower.ReadMeta(func(ms *meta.Store) error {
				_, _, err := ms.Replicas()
				return err
			})
			if err != nil {
				errs <- err
				return
			}
			reads++
		}
	}()
	for range 20 {
		if err := follower.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
			t.Fatal(err)
		}
		if got := follower.AppliedIndex(); got != 4 {
			t.Fatalf("restored replica applied index %d, want 4 (the snapshot's)", got)
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatalf("reading the metadata store during a restore: %v", err)
	}
	t.Logf("%d reads during 20 restores", reads)
	follower.Close()
	if err := follower.ReadMeta(func(*meta.Store) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadMeta on a closed store: %v, want ErrClosed", err)
	}
}

func TestApplyBatchMatchesApply(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	es := append(entries(t),
		&raft.Log{Index: 5, Data: encodeAppend("dev.c.d", 0, payloads(0, 2))},
		&raft.Log{Index: 6, Type: raft.LogConfiguration},                         // not a command
		&raft.Log{Index: 7, Data: encodeAppend("dev.a.b", 12, payloads(12, 1))},  // a gap
		&raft.Log{Index: 8, Data: encodeMeta(metaRepr(t, "dev.c.d"))},            // waits for the appends
		&raft.Log{Index: 9, Data: encodeAppend("dev.a.b", 9, payloads(9, 3))},    // after the meta write
		&raft.Log{Index: 10, Data: encodeAppend("dev.a.b", 10, payloads(10, 2))}, // overlaps the previous
	)
	for i := range es {
		es[i].Type = max(es[i].Type, raft.LogCommand)
	}
	es[5].Type = raft.LogConfiguration
	res := s.ApplyBatch(es)
	want := []any{nil, uint64(0), uint64(3), uint64(5), uint64(0), nil, nil, nil, uint64(9), uint64(10)}
	for i := range want {
		if i == 6 {
			if err, ok := res[i].(error); !ok || !errors.Is(err, errGap) {
				t.Fatalf("entry %d answered %v, want a gap error", es[i].Index, res[i])
			}
			continue
		}
		if res[i] != want[i] {
			t.Fatalf("entry %d answered %v, want %v", es[i].Index, res[i], want[i])
		}
	}
	checkLog(t, s, "dev.a.b", 12)
	checkLog(t, s, "dev.c.d", 2)
	// Replayed as a batch: nothing changes.
	s.ApplyBatch(es)
	checkLog(t, s, "dev.a.b", 12)
}

// dirSink is a sink with a snapshot directory, as a cluster group's.
type dirSink struct {
	sink
	dir string
}

func (s *dirSink) Dir() string { return s.dir }

// A snapshot recorded by reference is a few links and a small description: the topic's
// segments are linked, not copied, and keep their bytes after the leader removed them;
// the stream expanded from it has the announced size and restores another replica.
func TestSnapshotByReferenceLinksAndExpands(t *testing.T) {
	leader, snap, late := snapshotThenAppend(t)
	out := &dirSink{dir: t.TempDir()}
	if err := snap.Persist(out); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	stored := out.Bytes()
	if !bytes.HasPrefix(stored, []byte(cluster.SnapshotRefsMagic)) {
		t.Fatalf("the snapshot was written in full (%d bytes), not by reference", len(stored))
	}
	l, _ := leader.OpenLog("dev.a.b", leader.opts.Log)
	seg := l.Segments()[0].Path
	live, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	linked, err := os.Stat(filepath.Join(out.dir, "topics", "dev.a.b", filepath.Base(seg)))
	if err != nil || !os.SameFile(live, linked) {
		t.Fatalf("the segment is not linked into the snapshot: %v", err)
	}

	// The leader removes the topic: the snapshot still holds its records.
	apply(t, leader, &raft.Log{Index: 6, Data: encodeRemove("dev.a.b")})
	size, rc, err := leader.ExpandSnapshot(out.dir, stored[len(cluster.SnapshotRefsMagic):])
	if err != nil {
		t.Fatal(err)
	}
	full, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(full)) != size {
		t.Fatalf("expanded %d bytes (%v), announced %d", len(full), err, size)
	}
	follower := openStore(t, t.TempDir())
	defer follower.Close()
	if err := follower.Restore(io.NopCloser(bytes.NewReader(full))); err != nil {
		t.Fatal(err)
	}
	apply(t, follower, late)
	checkLog(t, follower, "dev.a.b", 11)

	// A description naming a file outside the snapshot is refused.
	if _, _, err := leader.ExpandSnapshot(out.dir, []byte(`{"entries":[{"name":"meta/x","path":"../../etc/passwd","bytes":1}]}`)); err == nil {
		t.Fatal("a description naming a file outside the snapshot was expanded")
	}
}

// An append made in a term is applied only if committed in that term, by Apply and by
// ApplyBatch alike; committed in another, it is refused and changes nothing.
func TestAppendInTermIsRefusedInAnotherTerm(t *testing.T) {
	for _, batch := range []bool{false, true} {
		s := openStore(t, t.TempDir())
		run := func(e *raft.Log) any {
			if batch {
				return s.ApplyBatch([]*raft.Log{e})[0]
			}
			return s.Apply(e)
		}
		stale := &raft.Log{Index: 1, Term: 4, Type: raft.LogCommand, Data: encodeAppendInTerm(3, "dev.a.b", 0, payloads(0, 2))}
		if res := run(stale); !errors.Is(res.(error), errStaleTerm) {
			t.Fatalf("batch %v: an append of term 3 committed in term 4 gave %v", batch, res)
		}
		fresh := &raft.Log{Index: 2, Term: 4, Type: raft.LogCommand, Data: encodeAppendInTerm(4, "dev.a.b", 0, payloads(0, 2))}
		if res := run(fresh); res != uint64(0) {
			t.Fatalf("batch %v: an append committed in its own term gave %v", batch, res)
		}
		checkLog(t, s, "dev.a.b", 2)
		s.Close()
	}
}
