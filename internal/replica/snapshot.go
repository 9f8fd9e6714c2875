package replica

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	tmp := filepath.Join(s.opts.DataDir, "replica-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	ckpt, err := os.MkdirTemp(tmp, "checkpoint-")
	if err != nil {
		return nil, err
	}
	// Pebble wants to create the directory itself.
	if err := os.Remove(ckpt); err != nil {
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
		os.RemoveAll(ckpt)
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
	return sink.Close()
}

func (sn *snapshot) persist(sink io.Writer) error {
	if err := sn.s.syncState(); err != nil {
		return err
	}
	// Entries up to the snapshot are never replayed again.
	if err := sn.s.Meta().ForgetRefusedThrough(sn.index); err != nil {
		return err
	}
	p, err := sn.plan()
	if err != nil {
		return err
	}
	if d, ok := sink.(cluster.SnapshotDir); ok {
		linked, err := p.link(d.Dir())
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
		os.RemoveAll(filepath.Join(d.Dir(), "meta"))
		os.RemoveAll(filepath.Join(d.Dir(), "topics"))
	}
	return p.write(sink, "", true)
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
	err := filepath.WalkDir(sn.ckpt, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(sn.ckpt, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		p.Entries = append(p.Entries, planEntry{Name: "meta/" + filepath.ToSlash(rel), Path: path, Bytes: info.Size()})
		return nil
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

// link links every file of the plan into dir under its entry's name and returns the
// plan with paths relative to dir. A segment removed by retention meanwhile is left out.
func (p *plan) link(dir string) (*plan, error) {
	out := &plan{Applied: p.Applied}
	dirs := map[string]bool{dir: true}
	for _, e := range p.Entries {
		if e.Dir {
			out.Entries = append(out.Entries, e)
			continue
		}
		rel := filepath.FromSlash(e.Name)
		target := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		for d := filepath.Dir(target); !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := os.Link(e.Path, target); err != nil {
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
		if err := diskfs.SyncDir(vfs.Default, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// write writes the stream of the plan to w, reading each file relative to base (paths
// of a linked plan) or as it is (""). Without content, files read as zeros: the stream
// has the same length, for counting it.
func (p *plan) write(w io.Writer, base string, content bool) error {
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
		if err := writeEntry(tw, e, base, content); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeEntry writes one file of a plan (see write).
func writeEntry(tw *tar.Writer, e planEntry, base string, content bool) error {
	var r io.Reader = io.LimitReader(zeros{}, e.Bytes)
	if content {
		path := e.Path
		if base != "" {
			path = filepath.Join(base, path)
		}
		f, err := os.Open(path)
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
	if err := p.write(&n, dir, false); err != nil {
		return 0, nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(p.write(pw, dir, true)) }()
	return int64(n), pr, nil
}

type countingWriter int64

func (c *countingWriter) Write(b []byte) (int, error) {
	*c += countingWriter(len(b))
	return len(b), nil
}

// Release drops the checkpoint.
func (sn *snapshot) Release() {
	os.RemoveAll(sn.ckpt)
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

// Restore replaces this replica's state with a snapshot sent by the leader (raft calls
// it only on a follower, never at start: the group is a DurableFSM).
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if s.selfRestore.Load() {
		// Seed: the snapshot is this store's own state.
		_, err := io.Copy(io.Discard, rc)
		return err
	}
	staging := filepath.Join(s.opts.DataDir, "replica-tmp", "restore")
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := untar(rc, staging); err != nil {
		os.RemoveAll(staging)
		return fmt.Errorf("replica: restore snapshot: %w", err)
	}
	// Entries up to the snapshot are in the restored state; raft continues after it.
	var applied uint64
	if b, err := os.ReadFile(filepath.Join(staging, appliedFile)); err == nil {
		applied, _ = strconv.ParseUint(string(b), 10, 64)
	}
	s.state.Lock() // readers wait for the new state (ReadMeta)
	defer s.state.Unlock()
	if err := s.closeState(); err != nil {
		s.logger.Warn("replica: closing the state replaced by a snapshot", "err", err)
	}
	for _, d := range []string{"meta", "topics"} {
		live := filepath.Join(s.opts.DataDir, d)
		if err := os.RemoveAll(live); err != nil {
			return err
		}
		src := filepath.Join(staging, d)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(src, 0o755); err != nil {
				return err
			}
		}
		if err := os.Rename(src, live); err != nil {
			return err
		}
	}
	if err := diskfs.SyncDir(vfs.Default, s.opts.DataDir); err != nil {
		return err
	}
	os.RemoveAll(staging)
	if err := s.openState(); err != nil {
		return fmt.Errorf("replica: open restored state: %w", err)
	}
	s.applied.Store(applied)
	// Make the restored copy durable before raft records the snapshot as applied.
	if err := s.syncState(); err != nil {
		return err
	}
	s.logger.Info("replica: restored a snapshot from the leader")
	return nil
}

// untar writes the snapshot's files under dir, refusing paths that leave it.
func untar(r io.Reader, dir string) error {
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
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(path, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry type %d in snapshot", h.Typeflag)
		}
	}
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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
