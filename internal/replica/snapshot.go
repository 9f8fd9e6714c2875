package replica

import (
	"archive/tar"
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
// durable, then streams the copy. The logs may have grown past the snapshot's index
// by the time they are read: a replica restoring it then holds appends that the log
// replayed after the snapshot gives it again, and skips them.

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
// compact its log), then writes the copy to sink.
func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	err := sn.persist(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (sn *snapshot) persist(w io.Writer) error {
	if err := sn.s.syncState(); err != nil {
		return err
	}
	// Entries up to the snapshot are never replayed again.
	if err := sn.s.Meta().ForgetRefusedThrough(sn.index); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	// The index the state is at, for the restoring replica's status.
	idx := []byte(strconv.FormatUint(sn.index, 10))
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: appliedFile, Size: int64(len(idx)), Mode: 0o644}); err != nil {
		return err
	}
	if _, err := tw.Write(idx); err != nil {
		return err
	}
	// The checkpoint.
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
		return addFile(tw, "meta/"+filepath.ToSlash(rel), path, info.Size())
	})
	if err != nil {
		return fmt.Errorf("replica: snapshot metadata: %w", err)
	}
	// The logs, as noted.
	names := make([]string, 0, len(sn.topics))
	for name := range sn.topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "topics/" + name + "/", Mode: 0o755}); err != nil {
			return err
		}
		for _, seg := range sn.topics[name] {
			err := addFile(tw, "topics/"+name+"/"+filepath.Base(seg.Path), seg.Path, seg.Bytes)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed by retention meanwhile: the restored log starts later
			}
			if err != nil {
				return fmt.Errorf("replica: snapshot log of topic %q: %w", name, err)
			}
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, name, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}); err != nil {
		return err
	}
	_, err = io.Copy(tw, io.NewSectionReader(f, 0, size))
	return err
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
	if err := seglog.OSFS.SyncDir(s.opts.DataDir); err != nil {
		return err
	}
	os.RemoveAll(staging)
	if err := s.openState(); err != nil {
		return fmt.Errorf("replica: open restored state: %w", err)
	}
	// Entries up to the snapshot are in the restored state; raft continues after it.
	var applied uint64
	if b, err := os.ReadFile(filepath.Join(staging, appliedFile)); err == nil {
		applied, _ = strconv.ParseUint(string(b), 10, 64)
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
