package cluster

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// Snapshots by reference. An FSM whose state is mostly immutable files (a broker's
// sealed log segments) need not copy them into every snapshot: its FSMSnapshot.Persist
// may link them into the snapshot's directory (SnapshotDir, offered by the sinks a group
// hands it) and write to the sink only a description starting with SnapshotRefsMagic. The
// snapshot then costs a few links and a small file, whatever the size of the state. The
// full stream exists only when raft reads the snapshot (Open: to send it to a follower
// far behind): the FSM's ExpandSnapshot builds it from the description and the linked
// files. Links are removed with the snapshot's directory when the store reaps it.

// SnapshotRefsMagic starts a snapshot that references files instead of holding them.
const SnapshotRefsMagic = "DMQ-SNAPSHOT-REFS 1\n"

// SnapshotDir is implemented by the sinks a group gives FSMSnapshot.Persist: Dir is the
// directory the snapshot is being written into. Files put there stay with the snapshot
// (the directory is renamed when the sink closes: reference them by relative paths) and
// go when it is removed. The store syncs Dir itself before the rename; making the files
// put there and any directories created under it durable is the FSM's part.
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

// The layout of hashicorp/raft's FileSnapshotStore, which snapshotStore keeps.
const (
	snapshotsDir      = "snapshots"
	snapshotMetaFile  = "meta.json"
	snapshotStateFile = "state.bin"
	snapshotTmpSuffix = ".tmp"
)

// snapshotCRC is the checksum of state.bin recorded in meta.json (FileSnapshotStore's).
var snapshotCRC = crc64.MakeTable(crc64.ECMA)

// snapshotStore is a group's raft.SnapshotStore on a vfs.FS, the file-system seam under
// every store of a node, so that snapshots run on the file systems tests cut the power of.
//
// Its disk format is hashicorp/raft's FileSnapshotStore's, so that either reads the
// other's snapshots: <dir>/snapshots/<term>-<index>-<unix ms>/ holds state.bin, the
// snapshot, and meta.json, the JSON of raft.SnapshotMeta plus CRC, the CRC-64 (ECMA) of
// state.bin. A snapshot is written in <id>.tmp and renamed to <id> when its sink closes.
//
// A snapshot whose sink's Close returned survives a power cut whole: state.bin and
// meta.json are synced, then the directory holding them, before the rename, and the
// snapshots directory after it. A power cut earlier leaves a .tmp directory, which the
// next newSnapshotStore removes with everything in it (the files the FSM linked there
// included), or, between the rename and the sync, the snapshot whole or not at all; the
// snapshots before it stay either way. Open checks state.bin against its CRC, and expands
// a snapshot written by reference (SnapshotRefsMagic) when the store has an expander. A
// successful Close keeps the retain newest snapshots, removes the others and syncs the
// snapshots directory.
type snapshotStore struct {
	fs     vfs.FS
	path   string // <group dir>/snapshots
	retain int
	logger hclog.Logger
	expand SnapshotExpander // nil: Open returns snapshots as stored
}

// fileSnapshotMeta is meta.json: the fields of FileSnapshotStore's type of the same name.
type fileSnapshotMeta struct {
	raft.SnapshotMeta
	CRC []byte
}

// newSnapshotStore opens the snapshot store in dir/snapshots on fs, creating the
// directory, and removes the snapshots a crash left half written. It keeps retain
// snapshots (at least one). expand, if not nil, expands snapshots written by reference.
func newSnapshotStore(fs vfs.FS, dir string, retain int, logger hclog.Logger, expand SnapshotExpander) (*snapshotStore, error) {
	if retain < 1 {
		return nil, fmt.Errorf("cluster: snapshot store in %s: must retain at least one snapshot, not %d", dir, retain)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &snapshotStore{fs: fs, path: fs.PathJoin(dir, snapshotsDir), retain: retain, logger: logger, expand: expand}
	if err := diskfs.MkdirAll(fs, s.path); err != nil {
		return nil, fmt.Errorf("cluster: snapshot directory %s: %w", s.path, err)
	}
	names, err := diskfs.ListDirs(fs, s.path)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot directory %s: %w", s.path, err)
	}
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, snapshotTmpSuffix) {
			path := fs.PathJoin(s.path, name)
			logger.Info("removing a snapshot left half written", "path", path)
			if err := fs.RemoveAll(path); err != nil {
				return nil, fmt.Errorf("cluster: remove half-written snapshot %s: %w", path, err)
			}
			removed = true
		}
	}
	if removed {
		if err := diskfs.SyncDir(fs, s.path); err != nil {
			return nil, fmt.Errorf("cluster: fsync directory %s: %w", s.path, err)
		}
	}
	return s, nil
}

// Create starts a snapshot in <id>.tmp. Only version 1 is supported, as by FileSnapshotStore.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("cluster: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	dir := s.fs.PathJoin(s.path, id+snapshotTmpSuffix)
	s.logger.Info("creating new snapshot", "path", dir)
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: create snapshot directory %s: %w", dir, err)
	}
	statePath := s.fs.PathJoin(dir, snapshotStateFile)
	f, err := s.fs.Create(statePath, vfs.WriteCategoryUnspecified)
	if err != nil {
		s.fs.RemoveAll(dir)
		return nil, fmt.Errorf("cluster: create %s: %w", statePath, err)
	}
	return &snapshotSink{
		store: s,
		dir:   dir,
		meta: fileSnapshotMeta{SnapshotMeta: raft.SnapshotMeta{
			Version:            version,
			ID:                 id,
			Index:              index,
			Term:               term,
			Peers:              encodePeers(configuration, trans),
			Configuration:      configuration,
			ConfigurationIndex: configurationIndex,
		}},
		state: f,
		hash:  crc64.New(snapshotCRC),
		buf:   make([]byte, 0, 64<<10),
	}, nil
}

// encodePeers is the Peers field of a snapshot's meta, as FileSnapshotStore fills it: the
// voters' addresses encoded by trans, in MsgPack. Raft reads it only from version 0
// snapshots; it is kept so that meta.json stays FileSnapshotStore's.
func encodePeers(configuration raft.Configuration, trans raft.Transport) []byte {
	var peers [][]byte
	for _, server := range configuration.Servers {
		if server.Suffrage == raft.Voter && trans != nil {
			peers = append(peers, trans.EncodePeer(server.ID, server.Address))
		}
	}
	var b bytes.Buffer
	h := codec.MsgpackHandle{}
	h.TimeNotBuiltin = true
	if err := codec.NewEncoder(&b, &h).Encode(peers); err != nil {
		panic(fmt.Errorf("cluster: encode peers: %w", err))
	}
	return b.Bytes()
}

// List returns the snapshots, newest first (by term, index and id), at most retain of
// them. Directories still being written and those whose meta.json cannot be read or
// whose version is not supported are left out with a warning.
func (s *snapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.all()
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for _, m := range metas[:min(len(metas), s.retain)] {
		out = append(out, &m.SnapshotMeta)
	}
	return out, nil
}

// all returns every readable snapshot, newest first.
func (s *snapshotStore) all() ([]*fileSnapshotMeta, error) {
	names, err := diskfs.ListDirs(s.fs, s.path)
	if err != nil {
		s.logger.Error("failed to scan snapshot directory", "path", s.path, "error", err)
		return nil, fmt.Errorf("cluster: snapshot directory %s: %w", s.path, err)
	}
	var metas []*fileSnapshotMeta
	for _, name := range names {
		if strings.HasSuffix(name, snapshotTmpSuffix) {
			s.logger.Warn("found temporary snapshot", "name", name)
			continue
		}
		m, err := s.readMeta(name)
		if err != nil {
			s.logger.Warn("failed to read metadata", "name", name, "error", err)
			continue
		}
		if m.Version < raft.SnapshotVersionMin || m.Version > raft.SnapshotVersionMax {
			s.logger.Warn("snapshot version not supported", "name", name, "version", m.Version)
			continue
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *fileSnapshotMeta) int { // newest first
		if a.Term != b.Term {
			return cmp.Compare(b.Term, a.Term)
		}
		if a.Index != b.Index {
			return cmp.Compare(b.Index, a.Index)
		}
		return strings.Compare(b.ID, a.ID)
	})
	return metas, nil
}

func (s *snapshotStore) readMeta(id string) (*fileSnapshotMeta, error) {
	path := s.fs.PathJoin(s.path, id, snapshotMetaFile)
	b, err := diskfs.ReadFile(s.fs, path)
	if err != nil {
		return nil, err
	}
	m := &fileSnapshotMeta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Open returns the snapshot as the FSM's Restore reads it, once state.bin has matched the
// CRC in meta.json: expanded if it was written by reference and the store has an
// expander, as stored otherwise (a snapshot received from a leader, or restored by a user).
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.openState(id)
	if err != nil {
		s.logger.Error("failed to open snapshot", "id", id, "error", err)
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(SnapshotRefsMagic))
	if s.expand == nil || !bytes.Equal(head, []byte(SnapshotRefsMagic)) {
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
	size, full, err := s.expand.ExpandSnapshot(s.fs.PathJoin(s.path, id), desc)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: expand snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, full, nil
}

// openState returns the meta of snapshot id and its state.bin, checked against the CRC.
func (s *snapshotStore) openState(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return nil, nil, fmt.Errorf("cluster: no snapshot %q", id)
	}
	meta, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot %s: %w", id, err)
	}
	path := s.fs.PathJoin(s.path, id, snapshotStateFile)
	f, err := s.fs.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot %s: %w", id, err)
	}
	h := crc64.New(snapshotCRC)
	n, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cluster: snapshot %s: read %s: %w", id, path, err)
	}
	if sum := h.Sum(nil); !bytes.Equal(sum, meta.CRC) {
		f.Close()
		return nil, nil, fmt.Errorf("cluster: snapshot %s: %s is damaged: %d bytes of CRC-64 %x, %s records %d bytes of CRC-64 %x",
			id, path, n, sum, snapshotMetaFile, meta.Size, meta.CRC)
	}
	return &meta.SnapshotMeta, struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, n), f}, nil
}

// reap removes the snapshots beyond the retain newest and syncs the snapshots directory.
func (s *snapshotStore) reap() error {
	metas, err := s.all()
	if err != nil {
		return err
	}
	if len(metas) <= s.retain {
		return nil
	}
	for _, m := range metas[s.retain:] {
		path := s.fs.PathJoin(s.path, m.ID)
		s.logger.Info("reaping snapshot", "path", path)
		if err := s.fs.RemoveAll(path); err != nil {
			s.logger.Error("failed to reap snapshot", "path", path, "error", err)
			return fmt.Errorf("cluster: reap snapshot %s: %w", path, err)
		}
	}
	if err := diskfs.SyncDir(s.fs, s.path); err != nil {
		return fmt.Errorf("cluster: fsync directory %s: %w", s.path, err)
	}
	return nil
}

// snapshotSink writes a snapshot's state.bin in <id>.tmp; Close puts the snapshot in place.
// It offers its directory (SnapshotDir).
type snapshotSink struct {
	store  *snapshotStore
	dir    string // <id>.tmp
	meta   fileSnapshotMeta
	state  vfs.File // nil once closed
	hash   hash.Hash64
	buf    []byte // written to state when full; vfs.File.Write may scribble on what it is given
	err    error  // the first failed write
	closed bool
}

func (k *snapshotSink) ID() string  { return k.meta.ID }
func (k *snapshotSink) Dir() string { return k.dir }

func (k *snapshotSink) Write(p []byte) (int, error) {
	if k.closed {
		return 0, errors.New("cluster: write to a closed snapshot sink")
	}
	n := 0
	for len(p) > 0 {
		if k.err != nil {
			return n, k.err
		}
		if len(k.buf) == cap(k.buf) {
			k.flush()
			continue
		}
		c := copy(k.buf[len(k.buf):cap(k.buf)], p)
		k.buf = k.buf[:len(k.buf)+c]
		k.hash.Write(p[:c])
		p, n = p[c:], n+c
	}
	return n, nil
}

func (k *snapshotSink) flush() {
	if k.err != nil || len(k.buf) == 0 {
		return
	}
	if _, err := k.state.Write(k.buf); err != nil {
		k.err = fmt.Errorf("cluster: write %s: %w", k.store.fs.PathJoin(k.dir, snapshotStateFile), err)
		return
	}
	k.meta.Size += int64(len(k.buf))
	k.buf = k.buf[:0]
}

// Close makes the snapshot durable and puts it in place, then reaps old snapshots. If it
// fails before the snapshot is in place, the snapshot's directory is removed.
func (k *snapshotSink) Close() error {
	if k.closed {
		return nil
	}
	k.closed = true
	if err := k.finish(); err != nil {
		k.store.logger.Error("failed to finalize snapshot", "path", k.dir, "error", err)
		if rerr := k.store.fs.RemoveAll(k.dir); rerr != nil {
			k.store.logger.Error("failed to delete temporary snapshot directory", "path", k.dir, "error", rerr)
		}
		return err
	}
	fs, parent := k.store.fs, k.store.path
	if err := diskfs.SyncDir(fs, parent); err != nil {
		k.store.logger.Error("failed syncing parent directory", "path", parent, "error", err)
		return fmt.Errorf("cluster: fsync directory %s: %w", parent, err)
	}
	return k.store.reap()
}

// finish writes and syncs state.bin, meta.json and their directory, and renames it.
func (k *snapshotSink) finish() error {
	fs := k.store.fs
	k.flush()
	statePath := fs.PathJoin(k.dir, snapshotStateFile)
	err := k.err
	if err == nil {
		if err = k.state.Sync(); err != nil {
			err = fmt.Errorf("cluster: fsync %s: %w", statePath, err)
		}
	}
	if cerr := k.state.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cluster: close %s: %w", statePath, cerr)
	}
	k.state = nil
	if err != nil {
		return err
	}
	k.meta.CRC = k.hash.Sum(nil)
	if err := k.writeMeta(); err != nil {
		return err
	}
	if err := diskfs.SyncDir(fs, k.dir); err != nil {
		return fmt.Errorf("cluster: fsync directory %s: %w", k.dir, err)
	}
	final := strings.TrimSuffix(k.dir, snapshotTmpSuffix)
	if err := fs.Rename(k.dir, final); err != nil {
		return fmt.Errorf("cluster: move snapshot into place: %w", err)
	}
	return nil
}

func (k *snapshotSink) writeMeta() error {
	fs := k.store.fs
	path := fs.PathJoin(k.dir, snapshotMetaFile)
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(&k.meta); err != nil { // one line, as FileSnapshotStore's
		return fmt.Errorf("cluster: encode %s: %w", path, err)
	}
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("cluster: create %s: %w", path, err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	return nil
}

// Cancel abandons the snapshot and removes its directory.
func (k *snapshotSink) Cancel() error {
	if k.closed {
		return nil
	}
	k.closed = true
	if k.state != nil {
		k.state.Close()
		k.state = nil
	}
	if err := k.store.fs.RemoveAll(k.dir); err != nil {
		return fmt.Errorf("cluster: remove cancelled snapshot %s: %w", k.dir, err)
	}
	return nil
}
