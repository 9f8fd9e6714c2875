package replica

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/seglog"
)

// A snapshot is a tar stream:
//
//	applied                        the index of the last entry it includes (decimal)
//	meta/<file>                    a Pebble checkpoint of the metadata store
//	topics/<topic>/<base>.log      each segment of each topic log, up to its size when
//	                               the snapshot was taken (the index files are rebuilt)
//
// Taking one (Snapshot, on the FSM goroutine) checkpoints the metadata store by hard
// links and notes each log's segments; Persist (off it) first makes the live state
// durable, then records the copy. The logs may have grown past the snapshot's index by
// the time they are read: a replica restoring it then holds appends that the log
// replayed after the snapshot gives it again, and skips them.
//
// Recorded by reference (package cluster, snapshots.go): Persist links the checkpoint's
// files and the segments into the snapshot's directory and writes a description of the
// stream (a plan: every entry with the file and length it takes). Segments are never
// rewritten, only appended to (the last) and deleted, so a link keeps the bytes the plan
// names: a snapshot costs links, not a copy of the data. The stream is produced from the
// plan when raft sends the snapshot to a follower (ExpandSnapshot). Without a snapshot
// directory (or if linking fails: another file system), Persist writes the stream itself.

// appliedFile holds the index of the last entry the snapshot's state includes.
const appliedFile = "applied"

type snapshot struct {
	s       *Store
	index   uint64 // last entry applied when taken
	ckpt    string
	topics  map[string][]seglog.SegmentInfo
	started time.Time
}

// Snapshot captures the state at the last applied entry.
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	tmp := s.tmpDir()
	if err := diskfs.MkdirAll(s.fs, tmp); err != nil {
		return nil, err
	}
	// Pebble creates the directory itself.
	ckpt := filepath.Join(tmp, fmt.Sprintf("checkpoint-%d", s.tmpSeq.Add(1)))
	if err := s.fs.RemoveAll(ckpt); err != nil {
		return nil, err
	}
	s.sinceSnapshot.Store(0) // on the FSM goroutine: every entry applied so far is in it
	s.mu.Lock()
	ms := s.mu.meta
	topics := make(map[string][]seglog.SegmentInfo, len(s.mu.logs))
	for name, l := range s.mu.logs {
		topics[name] = l.Segments()
	}
	s.mu.Unlock()
	if err := ms.Checkpoint(ckpt); err != nil {
		s.fs.RemoveAll(ckpt)
		return nil, fmt.Errorf("replica: checkpoint metadata: %w", err)
	}
	return &snapshot{s: s, index: s.applied.Load(), ckpt: ckpt, topics: topics, started: time.Now()}, nil
}

// Persist makes the live state durable (so a restart may resume from it and raft may
// compact its log), then records the copy in sink: by reference when the sink has a
// directory, as the full stream otherwise.
func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	err := sn.persist(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	// Entries up to the snapshot are never replayed again, now that it is recorded (a
	// start replays from the newest snapshot: forgotten before, a crash could leave an
	// older one newest, and its replay would find the refusals gone).
	return sn.s.Meta().ForgetRefusedThrough(sn.index)
}

func (sn *snapshot) persist(sink io.Writer) error {
	if err := sn.s.syncState(); err != nil {
		return err
	}
	if err := sn.s.recordStateIndex(sn.index); err != nil {
		return err
	}
	p, err := sn.plan()
	if err != nil {
		return err
	}
	if d, ok := sink.(cluster.SnapshotDir); ok {
		linked, err := p.link(sn.s.fs, d.Dir())
		if err == nil {
			desc, err := json.Marshal(linked)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(sink, cluster.SnapshotRefsMagic); err != nil {
				return err
			}
			_, err = sink.Write(desc)
			return err
		}
		sn.s.logger.Warn("replica: could not link the snapshot's files; copying them", "err", err)
		sn.s.fs.RemoveAll(filepath.Join(d.Dir(), "meta"))
		sn.s.fs.RemoveAll(filepath.Join(d.Dir(), "topics"))
	}
	return p.write(sn.s.fs, sink, "", true)
}

// plan is a snapshot stream to write: the applied index, then each entry in order.
type plan struct {
	Applied uint64      `json:"applied"`
	Entries []planEntry `json:"entries"`
}

// planEntry is a directory, or a file of Bytes bytes read from Path.
type planEntry struct {
	Name  string `json:"name"`
	Dir   bool   `json:"dir,omitempty"`
	Path  string `json:"path,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
}

// plan lists what the snapshot holds: the checkpoint's files, then the logs as noted.
func (sn *snapshot) plan() (*plan, error) {
	p := &plan{Applied: sn.index}
	err := walkFiles(sn.s.fs, sn.ckpt, "", func(rel string, size int64) {
		p.Entries = append(p.Entries, planEntry{Name: "meta/" + filepath.ToSlash(rel), Path: filepath.Join(sn.ckpt, rel), Bytes: size})
	})
	if err != nil {
		return nil, fmt.Errorf("replica: snapshot metadata: %w", err)
	}
	names := make([]string, 0, len(sn.topics))
	for name := range sn.topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p.Entries = append(p.Entries, planEntry{Name: "topics/" + name + "/", Dir: true})
		for _, seg := range sn.topics[name] {
			p.Entries = append(p.Entries, planEntry{Name: "topics/" + name + "/" + filepath.Base(seg.Path), Path: seg.Path, Bytes: seg.Bytes})
		}
	}
	return p, nil
}

// walkFiles calls fn with the path (relative to root) and size of every file under
// root/rel, in lexical order.
func walkFiles(fsys vfs.FS, root, rel string, fn func(rel string, size int64)) error {
	names, err := fsys.List(filepath.Join(root, rel))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		r := filepath.Join(rel, name)
		fi, err := fsys.Stat(filepath.Join(root, r))
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := walkFiles(fsys, root, r, fn); err != nil {
				return err
			}
			continue
		}
		fn(r, fi.Size())
	}
	return nil
}

// link links every file of the plan into dir under its entry's name and returns the
// plan with paths relative to dir. A segment removed by retention meanwhile is left out.
func (p *plan) link(fsys vfs.FS, dir string) (*plan, error) {
	out := &plan{Applied: p.Applied}
	dirs := map[string]bool{dir: true}
	for _, e := range p.Entries {
		if e.Dir {
			out.Entries = append(out.Entries, e)
			continue
		}
		rel := filepath.FromSlash(e.Name)
		target := filepath.Join(dir, rel)
		if err := diskfs.MkdirAll(fsys, filepath.Dir(target)); err != nil {
			return nil, err
		}
		for d := filepath.Dir(target); !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := fsys.Link(e.Path, target); err != nil {
			if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(e.Name, "topics/") {
				continue // removed by retention meanwhile: the restored log starts later
			}
			return nil, err
		}
		e.Path = rel
		out.Entries = append(out.Entries, e)
	}
	// The links must outlive a crash as the snapshot's file does.
	for d := range dirs {
		if err := diskfs.SyncDir(fsys, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// write writes the stream of the plan to w, reading each file relative to base (paths
// of a linked plan) or as it is (""). Without content, files read as zeros: the stream
// has the same length, for counting it.
func (p *plan) write(fsys vfs.FS, w io.Writer, base string, content bool) error {
	tw := tar.NewWriter(w)
	// The index the state is at, for the restoring replica's status.
	idx := []byte(strconv.FormatUint(p.Applied, 10))
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: appliedFile, Size: int64(len(idx)), Mode: 0o644}); err != nil {
		return err
	}
	if _, err := tw.Write(idx); err != nil {
		return err
	}
	for _, e := range p.Entries {
		if e.Dir {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: e.Name, Mode: 0o755}); err != nil {
				return err
			}
			continue
		}
		if err := writeEntry(fsys, tw, e, base, content); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeEntry writes one file of a plan (see write).
func writeEntry(fsys vfs.FS, tw *tar.Writer, e planEntry, base string, content bool) error {
	var r io.Reader = io.LimitReader(zeros{}, e.Bytes)
	if content {
		path := e.Path
		if base != "" {
			path = filepath.Join(base, path)
		}
		f, err := fsys.Open(path)
		if errors.Is(err, fs.ErrNotExist) && base == "" && strings.HasPrefix(e.Name, "topics/") {
			return nil // removed by retention meanwhile: the restored log starts later
		}
		if err != nil {
			return err
		}
		defer f.Close()
		r = io.NewSectionReader(f, 0, e.Bytes)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.Name, Size: e.Bytes, Mode: 0o644}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, r); err != nil {
		return fmt.Errorf("replica: snapshot %s: %w", e.Name, err)
	}
	return nil
}

// zeros reads as zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// ExpandSnapshot implements cluster.SnapshotExpander: the stream of a snapshot recorded by
// reference, from its description and the files linked in dir.
func (s *Store) ExpandSnapshot(dir string, description []byte) (int64, io.ReadCloser, error) {
	var p plan
	if err := json.Unmarshal(description, &p); err != nil {
		return 0, nil, fmt.Errorf("replica: snapshot description: %w", err)
	}
	for _, e := range p.Entries {
		if !e.Dir && !filepath.IsLocal(e.Path) {
			return 0, nil, fmt.Errorf("replica: snapshot description names %q outside the snapshot", e.Path)
		}
	}
	var n countingWriter
	if err := p.write(s.fs, &n, dir, false); err != nil {
		return 0, nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(p.write(s.fs, pw, dir, true)) }()
	return int64(n), pr, nil
}

type countingWriter int64

func (c *countingWriter) Write(b []byte) (int, error) {
	*c += countingWriter(len(b))
	return len(b), nil
}

// Release drops the checkpoint.
func (sn *snapshot) Release() {
	sn.s.fs.RemoveAll(sn.ckpt)
	sn.s.logger.Debug("replica: snapshot released", "took", time.Since(sn.started))
}

// syncState makes every applied entry durable: the topic logs and the metadata store.
func (s *Store) syncState() error {
	s.mu.Lock()
	ms := s.mu.meta
	logs := make([]*seglog.Log, 0, len(s.mu.logs))
	for _, l := range s.mu.logs {
		logs = append(logs, l)
	}
	s.mu.Unlock()
	for _, l := range logs {
		if err := l.Sync(); err != nil && !errors.Is(err, seglog.ErrClosed) {
			return err
		}
	}
	return ms.Sync()
}

// Installing a snapshot sent by the leader replaces the metadata store and the topic
// logs. The new state is written beside the live one (restoreDir) and made durable, then
// marked complete; only then do its directories replace the live ones. A start that finds
// a complete install finishes it and one that finds an incomplete install discards it
// (recoverRestore), so the live state is the old one whole or the new one whole.
//
// Raft records a snapshot in its store before it asks the FSM to install it, and a
// restart resumes from the state on disk (cluster.GroupConfig.DurableFSM). So that a
// crash between the two cannot leave the replica behind what Raft believes it holds, the
// store records the applied index of the newest snapshot its durable state covers
// (stateIndexFile: one it persisted or installed), and a group whose newest snapshot
// is past it installs that snapshot again at start (CoversSnapshot).

// stateIndexFile holds the applied index of the newest snapshot the durable state
// covers.
const stateIndexFile = "replica-state-index"

// restoreComplete marks a staged install whose files are all durable.
const restoreComplete = "complete"

func (s *Store) restoreDir() string { return filepath.Join(s.opts.DataDir, "replica-restore") }
func (s *Store) tmpDir() string     { return filepath.Join(s.opts.DataDir, "replica-tmp") }

// StateIndex is the applied index of the newest snapshot that the state on disk covers
// (0: none recorded).
func (s *Store) StateIndex() uint64 { return s.stateIndex.Load() }

// CoversSnapshot implements cluster.SnapshotChecker: it reads the applied index at the
// head of the snapshot's stream.
func (s *Store) CoversSnapshot(r io.Reader) (bool, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return false, err
	}
	if h.Name != appliedFile || h.Size > 20 {
		return false, fmt.Errorf("the snapshot starts with %q, not its applied index", h.Name)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return false, err
	}
	idx, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return false, fmt.Errorf("the snapshot's applied index %q: %w", b, err)
	}
	return idx <= s.StateIndex(), nil
}

// loadStateIndex reads stateIndexFile. Without one, a new replica covers no snapshot,
// and one whose data predates the file is trusted to cover them all, as before.
func (s *Store) loadStateIndex(fresh bool) error {
	b, err := diskfs.ReadFile(s.fs, filepath.Join(s.opts.DataDir, stateIndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		if fresh {
			return diskfs.WriteFile(s.fs, filepath.Join(s.opts.DataDir, stateIndexFile), []byte("0\n"))
		}
		s.stateIndex.Store(math.MaxUint64)
		return nil
	}
	if err != nil {
		return err
	}
	idx, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("replica: %s is damaged (%w); remove it to install the newest snapshot again at start", filepath.Join(s.opts.DataDir, stateIndexFile), err)
	}
	s.stateIndex.Store(idx)
	return nil
}

// recordStateIndex records that the durable state covers the snapshot at idx.
func (s *Store) recordStateIndex(idx uint64) error {
	s.stateIndexMu.Lock()
	defer s.stateIndexMu.Unlock()
	if cur := s.stateIndex.Load(); idx <= cur && cur != math.MaxUint64 {
		return nil
	}
	path := filepath.Join(s.opts.DataDir, stateIndexFile)
	if err := diskfs.WriteFile(s.fs, path, []byte(strconv.FormatUint(idx, 10)+"\n")); err != nil {
		return fmt.Errorf("replica: record the state's snapshot index in %s: %w", path, err)
	}
	s.stateIndex.Store(idx)
	return nil
}

// recoverRestore finishes or discards an install a crash interrupted, and removes the
// temporary files of snapshots being taken; before the state is opened.
func (s *Store) recoverRestore() error {
	if err := s.fs.RemoveAll(s.tmpDir()); err != nil {
		return err
	}
	complete, err := diskfs.Exists(s.fs, filepath.Join(s.restoreDir(), restoreComplete))
	if err != nil {
		return err
	}
	if complete {
		s.logger.Warn("replica: finishing the install of a snapshot that a crash interrupted")
		return s.swapRestored()
	}
	if err := s.fs.RemoveAll(s.restoreDir()); err != nil {
		return err
	}
	return diskfs.SyncDir(s.fs, s.opts.DataDir)
}

// swapRestored replaces the live directories with the staged ones of a complete install,
// then records the snapshot's index and removes the staging directory. It can be done
// again after a crash at any point.
func (s *Store) swapRestored() error {
	staging := s.restoreDir()
	b, err := diskfs.ReadFile(s.fs, filepath.Join(staging, appliedFile))
	if err != nil {
		return fmt.Errorf("replica: staged snapshot: %w", err)
	}
	applied, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("replica: staged snapshot's index %q: %w", b, err)
	}
	for _, d := range []string{"meta", "topics"} {
		src, live := filepath.Join(staging, d), filepath.Join(s.opts.DataDir, d)
		ok, err := diskfs.Exists(s.fs, src)
		if err != nil {
			return err
		}
		if !ok {
			continue // moved before a crash
		}
		if err := s.fs.RemoveAll(live); err != nil {
			return err
		}
		if err := s.fs.Rename(src, live); err != nil {
			return err
		}
		if err := diskfs.SyncDir(s.fs, s.opts.DataDir); err != nil {
			return err
		}
		if err := diskfs.SyncDir(s.fs, staging); err != nil {
			return err
		}
	}
	if err := s.recordStateIndex(applied); err != nil {
		return err
	}
	if err := s.fs.RemoveAll(staging); err != nil {
		return err
	}
	return diskfs.SyncDir(s.fs, s.opts.DataDir)
}

// Restore replaces this replica's state with a snapshot: one sent by the leader, or at
// start the newest one when the state on disk is behind it (see StateIndex).
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if s.selfRestore.Load() {
		// Seed: the snapshot is this store's own state.
		_, err := io.Copy(io.Discard, rc)
		return err
	}
	staging := s.restoreDir()
	if err := s.fs.RemoveAll(staging); err != nil {
		return err
	}
	err := s.stage(rc, staging)
	if err != nil {
		s.fs.RemoveAll(staging)
		return fmt.Errorf("replica: restore snapshot: %w", err)
	}
	s.state.Lock() // readers wait for the new state (ReadMeta)
	defer s.state.Unlock()
	if err := s.closeState(); err != nil {
		s.logger.Warn("replica: closing the state replaced by a snapshot", "err", err)
	}
	if err := s.swapRestored(); err != nil {
		return err
	}
	if err := s.openState(); err != nil {
		return fmt.Errorf("replica: open restored state: %w", err)
	}
	s.applied.Store(s.stateIndex.Load())
	s.logger.Info("replica: installed a snapshot", "index", s.stateIndex.Load())
	return nil
}

// stage writes the snapshot's files under staging, makes them durable and marks the
// install complete.
func (s *Store) stage(r io.Reader, staging string) error {
	if err := untar(s.fs, r, staging); err != nil {
		return err
	}
	if ok, err := diskfs.Exists(s.fs, filepath.Join(staging, appliedFile)); err != nil || !ok {
		return fmt.Errorf("no %q entry in the snapshot (%v)", appliedFile, err)
	}
	for _, d := range []string{"meta", "topics"} {
		if err := diskfs.MkdirAll(s.fs, filepath.Join(staging, d)); err != nil {
			return err
		}
	}
	// Every directory's entries, deepest first; then the marker.
	var dirs []string
	var walk func(string) error
	walk = func(d string) error {
		names, err := diskfs.ListDirs(s.fs, d)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := walk(filepath.Join(d, n)); err != nil {
				return err
			}
		}
		dirs = append(dirs, d)
		return nil
	}
	if err := walk(staging); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := diskfs.SyncDir(s.fs, d); err != nil {
			return err
		}
	}
	return diskfs.WriteFile(s.fs, filepath.Join(staging, restoreComplete), nil)
}

// untar writes the snapshot's files under dir, refusing paths that leave it. Each file
// is synced; the directories are not.
func untar(fsys vfs.FS, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.FromSlash(h.Name)
		if !filepath.IsLocal(name) || !(h.Name == appliedFile || strings.HasPrefix(h.Name, "meta/") || strings.HasPrefix(h.Name, "topics/")) {
			return fmt.Errorf("unexpected path %q in snapshot", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := fsys.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(fsys, path, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry type %d in snapshot", h.Typeflag)
		}
	}
}

func writeFile(fsys vfs.FS, path string, r io.Reader) error {
	if err := fsys.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := fsys.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
