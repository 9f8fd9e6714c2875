package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// Snapshots by reference. An FSM whose state is mostly immutable files (a broker's
// sealed log segments) need not copy them into every snapshot: its FSMSnapshot.Persist
// may link them into the snapshot's directory (SnapshotDir, offered by the sinks a group
// hands it) and write to the sink only a description starting with SnapshotRefsMagic. The
// snapshot then costs a few links and a small file, whatever the size of the state. The
// full stream exists only when raft reads the snapshot (Open: to send it to a follower
// far behind): the FSM's ExpandSnapshot builds it from the description and the linked
// files. Links are removed with the snapshot's directory when raft reaps it.

// SnapshotRefsMagic starts a snapshot that references files instead of holding them.
const SnapshotRefsMagic = "DMQ-SNAPSHOT-REFS 1\n"

// SnapshotDir is implemented by the sinks a group gives FSMSnapshot.Persist: Dir is the
// directory the snapshot is being written into. Files put there stay with the snapshot
// (the directory is renamed when the sink closes: reference them by relative paths) and
// go when it is removed.
type SnapshotDir interface {
	Dir() string
}

// SnapshotExpander is implemented by an FSM that writes snapshots by reference: from the
// description its Persist wrote (after the magic) and the snapshot's directory, it
// returns the full snapshot its Restore reads, and the stream's exact size.
type SnapshotExpander interface {
	ExpandSnapshot(dir string, description []byte) (size int64, r io.ReadCloser, err error)
}

// maxDescription bounds a snapshot's description.
const maxDescription = 64 << 20

// refSnapshotStore is a FileSnapshotStore whose sinks offer SnapshotDir and whose Open
// expands snapshots written by reference.
type refSnapshotStore struct {
	*raft.FileSnapshotStore
	path   string // <group dir>/snapshots
	expand SnapshotExpander
}

// newRefSnapshotStore wraps store, whose snapshots live in path, for fsm. Snapshots left
// half written by a crash are removed (hashicorp/raft only warns about them), with the
// files linked into them.
func newRefSnapshotStore(store *raft.FileSnapshotStore, path string, fsm SnapshotExpander) (*refSnapshotStore, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.RemoveAll(filepath.Join(path, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	return &refSnapshotStore{FileSnapshotStore: store, path: path, expand: fsm}, nil
}

func (s *refSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	// The file store writes into <id>.tmp and renames it to <id> on Close.
	return &dirSink{SnapshotSink: sink, dir: filepath.Join(s.path, sink.ID()+".tmp")}, nil
}

// dirSink is a sink that tells its directory.
type dirSink struct {
	raft.SnapshotSink
	dir string
}

func (d *dirSink) Dir() string { return d.dir }

// Open returns the snapshot as the FSM's Restore reads it: expanded if it was written by
// reference, as stored otherwise (a snapshot received from a leader, or restored by a user).
func (s *refSnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(SnapshotRefsMagic))
	if !bytes.Equal(head, []byte(SnapshotRefsMagic)) {
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	defer rc.Close()
	br.Discard(len(SnapshotRefsMagic))
	desc, err := io.ReadAll(io.LimitReader(br, maxDescription+1))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: read snapshot %s: %w", id, err)
	}
	if len(desc) > maxDescription {
		return nil, nil, fmt.Errorf("cluster: snapshot %s: description over %d bytes", id, maxDescription)
	}
	size, full, err := s.expand.ExpandSnapshot(filepath.Join(s.path, id), desc)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: expand snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, full, nil
}
