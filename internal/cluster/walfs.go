package cluster

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/hashicorp/raft-wal/types"
)

// walVFS is raft-wal's file system (types.VFS) on a vfs.FS, with the semantics of
// raft-wal's own (package fs): Create refuses an existing file and preallocates,
// OpenWriter refuses a missing one (with an error matching os.ErrNotExist, which the
// WAL's recovery depends on), and Delete syncs the directory. The first Sync of a file
// open for writing also syncs its directory: raft-wal's does so only for a file Create
// made, but a segment created and closed before anything was synced in it (the tail a
// rotation or a cut of the log's tail creates, then a clean shutdown) is reopened with
// OpenWriter, and the entries appended to it then were acknowledged while its
// directory entry could still vanish in a power cut (TestLogSurvivesPowerCuts).
//
// Preallocation goes through vfs.File.Preallocate, which on Linux keeps the file's
// size (FALLOC_FL_KEEP_SIZE): a segment file ends where its writes end, not at its size
// limit as with raft-wal's own file system. raft-wal reads both alike: a short read at
// the end of a segment is its end, as zeros are.
//
// vfs.File asks for one write or sync at a time per file; the zero filler
// (logstore_prealloc.go) writes and syncs from its own goroutine, which the file
// systems used here (the OS's, MemFS, errorfs over them) allow.
type walVFS struct{ fs vfs.FS }

func (v walVFS) ListDir(dir string) ([]string, error) {
	names, err := v.fs.List(dir)
	if err != nil {
		return nil, err
	}
	files := names[:0]
	for _, name := range names {
		fi, err := v.fs.Stat(v.fs.PathJoin(dir, name))
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, name)
		}
	}
	slices.Sort(files)
	return files, nil
}

func (v walVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	path := v.fs.PathJoin(dir, name)
	if size > math.MaxInt32 {
		return nil, fmt.Errorf("create %s: maximum file size is %d bytes", path, math.MaxInt32)
	}
	// vfs.FS.Create replaces an existing file; raft-wal's refuses it.
	if _, err := v.fs.Stat(path); err == nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: os.ErrExist}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := v.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	if size > 0 {
		if err := f.Preallocate(0, int64(size)); err != nil {
			f.Close()
			return nil, fmt.Errorf("preallocate %s: %w", path, err)
		}
	}
	return &walFile{File: f, fs: v.fs, dir: dir}, nil
}

func (v walVFS) Delete(dir, name string) error {
	if err := v.fs.Remove(v.fs.PathJoin(dir, name)); err != nil {
		return err
	}
	return diskfs.SyncDir(v.fs, dir)
}

func (v walVFS) OpenReader(dir, name string) (types.ReadableFile, error) {
	return v.fs.Open(v.fs.PathJoin(dir, name))
}

func (v walVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	path := v.fs.PathJoin(dir, name)
	// vfs.FS.OpenReadWrite creates a missing file; raft-wal's refuses.
	if _, err := v.fs.Stat(path); err != nil {
		return nil, err
	}
	f, err := v.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	return &walFile{File: f, fs: v.fs, dir: dir}, nil
}

// walFile is a segment file open for writing.
type walFile struct {
	vfs.File
	fs  vfs.FS
	dir string
	// dirSynced is set once a Sync also synced the directory, which the first does: the
	// WAL acknowledges no entry of the file before that.
	dirSynced atomic.Bool
}

func (f *walFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	return f.syncDirOnce()
}

// SyncData is Sync without the file's metadata but its size (fdatasync).
func (f *walFile) SyncData() error {
	if err := f.File.SyncData(); err != nil {
		return err
	}
	return f.syncDirOnce()
}

func (f *walFile) syncDirOnce() error {
	if f.dirSynced.Load() {
		return nil
	}
	if err := diskfs.SyncDir(f.fs, f.dir); err != nil {
		return err
	}
	f.dirSynced.Store(true)
	return nil
}

// syncData makes f's data durable with fdatasync where f has it.
func syncData(f types.WritableFile) error {
	if d, ok := f.(interface{ SyncData() error }); ok {
		return d.SyncData()
	}
	return f.Sync()
}
