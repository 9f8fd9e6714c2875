package cluster

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// logCacheEntries is how many recent log entries a group keeps in memory for
// replication. Memory is bounded by this times the largest entry (a publish batch).
const logCacheEntries = 128

// logStore is a group's Raft log and stable store.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// walStore is hashicorp/raft-wal: append-only segment files, fsynced per append batch,
// with its small state (segments, term, vote) in a bbolt file. Measured against the
// bbolt log this package had first (BenchmarkOneVoterApply): 0.16–0.19 ms per Apply instead
// of 0.50, about 125k applies/s instead of 50k, and
// it writes each entry once instead of rewriting B+tree pages, which matters for publish
// batches of up to megabytes.
//
// raft-wal v0.4.0's Close leaves its meta database open (and locked), so a group
// reopened in the same process would block: the store is given a meta database it can
// close itself.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// openLogStore opens the log in dir, its segment files through vfs.
func openLogStore(dir string, segmentBytes int, vfs types.VFS, log hclog.Logger) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	meta := &metadb.BoltMetaDB{}
	filer := segment.NewFiler(dir, vfs)
	if err := finishRotation(dir, meta, filer, segmentBytes, log); err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log in %s: %w", dir, err)
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(log), wal.WithSegmentSize(segmentBytes),
		wal.WithSegmentFiler(filer))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log in %s: %w", dir, err)
	}
	return &walStore{WAL: w, meta: meta}, nil
}

// finishRotation completes a segment rotation a crash interrupted. raft-wal v0.4.0 seals
// a full segment in the same write as the batch that fills it, then records the seal and
// the next segment in its meta database, from another goroutine. Killed in between, it
// leaves a tail sealed on disk but not in the meta database, and once reopened it
// appends to that tail and fails each time with "segment is sealed": its recovery does
// not finish the rotation, so the group never commits again (found by kill -9 under
// load: a one-voter node that never led again). This records what the rotation would
// have: the tail sealed at its last entry and a new, empty tail after it, which the WAL
// then creates as after a crash between recording a segment and creating its file.
func finishRotation(dir string, meta *metadb.BoltMetaDB, filer *segment.Filer, segmentBytes int, log hclog.Logger) error {
	state, err := meta.Load(dir)
	if err != nil || len(state.Segments) == 0 {
		return err
	}
	tail := state.Segments[len(state.Segments)-1]
	if !tail.SealTime.IsZero() {
		return nil
	}
	w, err := filer.RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return nil // the WAL creates it
	}
	if err != nil {
		return err
	}
	sealed, indexStart, err := w.Sealed()
	last := w.LastIndex()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil || !sealed {
		return err
	}
	if segmentBytes <= 0 {
		segmentBytes = wal.DefaultSegmentSize
	}
	tail.SealTime, tail.MaxIndex, tail.IndexStart = time.Now(), last, indexStart
	state.Segments[len(state.Segments)-1] = tail
	state.Segments = append(state.Segments, types.SegmentInfo{
		ID: state.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(segmentBytes), Codec: tail.Codec, CreateTime: time.Now(),
	})
	state.NextSegmentID++
	log.Warn("finished a segment rotation a crash interrupted", "segment", tail.ID, "last_index", last)
	return meta.CommitState(state)
}

func (s *walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.meta.Close())
}

// logVFS is the file system of the log's segments: raft-wal's own, which syncs each
// append batch, with zeros written ahead of the writer (logstore_prealloc.go), or with
// noSync one whose segment files ignore Sync. Creating and deleting segments still
// syncs the directory, as does the small meta database (term, vote, segment list):
// those are rare.
func logVFS(noSync bool) types.VFS {
	if noSync {
		return unsyncedVFS{fs.New()}
	}
	return preallocVFS{fs.New()}
}

// unsyncedVFS hands out segment files whose Sync does nothing.
type unsyncedVFS struct{ types.VFS }

func (v unsyncedVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return unsyncedFile{f}, nil
}

func (v unsyncedVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return unsyncedFile{f}, nil
}

type unsyncedFile struct{ types.WritableFile }

func (unsyncedFile) Sync() error { return nil }
