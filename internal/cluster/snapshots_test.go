package cluster

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// expanderFunc is a SnapshotExpander for tests.
type expanderFunc func(dir string, desc []byte) (int64, io.ReadCloser, error)

func (f expanderFunc) ExpandSnapshot(dir string, desc []byte) (int64, io.ReadCloser, error) {
	return f(dir, desc)
}

// The store offers its sinks' directory; a snapshot written by reference keeps the files
// put there and is expanded on Open, with the expanded size; one written in full is read
// as stored; snapshots half written before a crash are removed with their files.
func TestRefSnapshotStore(t *testing.T) {
	base := t.TempDir()
	files, err := raft.NewFileSnapshotStore(base, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "snapshots")
	stale := filepath.Join(path, "1-2-3.tmp")
	if err := os.MkdirAll(filepath.Join(stale, "topics"), 0o755); err != nil {
		t.Fatal(err)
	}
	var gotDir, gotDesc string
	s, err := newRefSnapshotStore(files, path, expanderFunc(func(dir string, desc []byte) (int64, io.ReadCloser, error) {
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
