package replica

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dmqio/dmq/internal/diskfs"
)

// Seeding: a single node's data directory becomes the first node of a cluster. Its
// topics and settings predate the Raft log, so nodes that join would replay a log
// without them. The first time it leads, the node makes its own state the group's
// snapshot (cluster.Group.Restore): joining nodes then install it. The need survives a
// restart in a marker file until it is done.

func (s *Store) seedMarker() string { return filepath.Join(s.opts.DataDir, "replica-seed-needed") }

// MarkSeedNeeded records that the state must be seeded into the group.
func (s *Store) MarkSeedNeeded() error {
	return diskfs.WriteFile(s.fs, s.seedMarker(), []byte("this broker's data predates its Raft log; it is made the group's snapshot when this node first leads\n"))
}

// SeedNeeded reports whether the state still has to be seeded.
func (s *Store) SeedNeeded() bool {
	ok, err := diskfs.Exists(s.fs, s.seedMarker())
	return err == nil && ok
}

// Seed writes the state as a snapshot and hands it to restore (the group's Restore,
// which gives it back to this store's Restore: that one is skipped, the state is
// already here). The marker goes once restore succeeded.
func (s *Store) Seed(restore func(size int64, r io.Reader) error) error {
	tmp := s.tmpDir()
	if err := diskfs.MkdirAll(s.fs, tmp); err != nil {
		return err
	}
	name := filepath.Join(tmp, fmt.Sprintf("seed-%d", s.tmpSeq.Add(1)))
	f, err := s.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer s.fs.Remove(name)
	defer f.Close()
	snap, err := s.Snapshot()
	if err != nil {
		return err
	}
	err = snap.(*snapshot).persist(f)
	snap.Release()
	if err != nil {
		return fmt.Errorf("replica: write the seed snapshot: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	s.selfRestore.Store(true)
	err = restore(size, io.NewSectionReader(f, 0, size))
	s.selfRestore.Store(false)
	if err != nil {
		return fmt.Errorf("replica: seed the group with this node's state: %w", err)
	}
	if err := s.fs.Remove(s.seedMarker()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := diskfs.SyncDir(s.fs, s.opts.DataDir); err != nil {
		return err
	}
	s.logger.Info("replica: this node's data is now the group's snapshot; joining nodes install it", "bytes", size)
	return nil
}
