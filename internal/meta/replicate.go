package meta

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Replicator carries the store's writes to its replicas in a cluster. Replicate receives
// a write batch's bytes (Pebble's batch representation) and returns once the write is
// committed by the group and applied to this store through ApplyReplicated; an error
// means the write may not have happened and the store is unchanged here.
type Replicator interface {
	Replicate(repr []byte) error
	// ReplicateAsync queues the write and returns at once; writes queued by one caller
	// are applied in order. repr is valid only during the call (the batch is closed
	// after it). The store uses it for the writes it commits without fsync
	// on a single node (positions, counters, traces): their durability is not awaited
	// there either. A failure is the replicator's to report.
	ReplicateAsync(repr []byte)
}

// appliedKey holds the index of the last replicated write applied, written in the same
// batch as that write, so replaying a replication log after a restart skips what the
// store already has. '~' sorts after every other prefix and no prefix starts with it.
var appliedKey = []byte("~replica/applied")

// SetReplicator routes every later write through r instead of committing it locally
// (nil: local commits again). The broker of a cluster node sets it while it leads.
func (s *Store) SetReplicator(r Replicator) {
	s.repl.Store(&r)
}

func (s *Store) replicator() Replicator {
	if p := s.repl.Load(); p != nil {
		return *p
	}
	return nil
}

// commit writes b locally with opts, or through the replicator. It does not close b.
func (s *Store) commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	if r := s.replicator(); r != nil {
		if b.Empty() {
			return nil
		}
		if opts == pebble.NoSync {
			r.ReplicateAsync(b.Repr())
			return nil
		}
		return r.Replicate(b.Repr())
	}
	return s.commitLocal(b, opts)
}

// commitLocal commits b to this store. Without a write-ahead log (OpenReplica), where
// Pebble refuses a synced commit, a synced one is committed and then flushed.
func (s *Store) commitLocal(b *pebble.Batch, opts *pebble.WriteOptions) error {
	if !s.noWAL || !opts.GetSync() {
		return b.Commit(opts)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return s.db.Flush()
}

func (s *Store) set(key, value []byte, opts *pebble.WriteOptions) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(key, value, nil); err != nil {
		return err
	}
	return s.commit(b, opts)
}

func (s *Store) del(key []byte, opts *pebble.WriteOptions) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(key, nil); err != nil {
		return err
	}
	return s.commit(b, opts)
}

// ApplyReplicated applies a replicated write (a batch representation from Replicate)
// with the index of its replication log entry, atomically with the record of that index.
// An index not above AppliedIndex is skipped: the write is already here. It is written
// without fsync: the replication log is the durable copy until Sync.
func (s *Store) ApplyReplicated(index uint64, repr []byte) error {
	if index <= s.applied.Load() {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	// The batch owns the slice it is given.
	if err := b.SetRepr(append([]byte(nil), repr...)); err != nil {
		return fmt.Errorf("replicated metadata write %d: %w", index, err)
	}
	if err := b.Set(appliedKey, binary.BigEndian.AppendUint64(nil, index), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	s.applied.Store(index)
	if fn := s.onAuth.Load(); fn != nil && touchesAuth(repr) {
		(*fn)()
	}
	return nil
}

// AppliedIndex is the index of the last replicated write applied (0: none).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

func (s *Store) loadApplied() error {
	v, closer, err := s.db.Get(appliedKey)
	if err == pebble.ErrNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) != 8 {
		return fmt.Errorf("metadata store: bad applied index record (%d bytes)", len(v))
	}
	s.applied.Store(binary.BigEndian.Uint64(v))
	return nil
}

// Sync makes every write so far durable: the write-ahead log is fsynced, or without
// one (OpenReplica) the memory table is flushed.
func (s *Store) Sync() error {
	if s.noWAL {
		return s.db.Flush()
	}
	return s.db.LogData(nil, pebble.Sync)
}

// Checkpoint writes a consistent copy of the store to dir (which must not exist),
// hard-linking its files where it can.
func (s *Store) Checkpoint(dir string) error {
	if s.noWAL {
		// Without a log, what is only in the memory table would be missing.
		if err := s.db.Flush(); err != nil {
			return err
		}
	}
	return s.db.Checkpoint(dir, pebble.WithFlushedWAL())
}

// refusedPrefix keys the replicated entries a replica refused (an append past the end
// of its log), by index, so that a replay after a restart refuses them again even if
// the log has grown past that point since.
var refusedPrefix = []byte("~replica/refused/")

func refusedKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), refusedPrefix...), index)
}

// MarkRefused records that the entry at index was refused (without fsync, like the
// writes it is replayed with).
//
// Without a write-ahead log (OpenReplica) the record is flushed at once: the topic log
// may grow past the refused offsets before the next flush, and a replay that found no
// record would store part of the refused entry there. Refusals are rare (they follow a
// failed append on the leader).
func (s *Store) MarkRefused(index uint64) error {
	if err := s.db.Set(refusedKey(index), nil, pebble.NoSync); err != nil {
		return err
	}
	if s.noWAL {
		return s.db.Flush()
	}
	return nil
}

// Refused reports whether the entry at index was refused before.
func (s *Store) Refused(index uint64) (bool, error) {
	_, closer, err := s.db.Get(refusedKey(index))
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// ForgetRefusedThrough drops the records of refused entries up to index (a durable
// snapshot covers them: they are never replayed again).
func (s *Store) ForgetRefusedThrough(index uint64) error {
	return s.db.DeleteRange(refusedKey(0), refusedKey(index+1), pebble.NoSync)
}

// ResetReplication forgets the applied index and the refused entries: the store is
// about to follow a new replication log (a single node's data directory turned into
// the first node of a cluster), whose indexes start again from 1.
func (s *Store) ResetReplication() error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(appliedKey, nil); err != nil {
		return err
	}
	if err := b.DeleteRange(refusedKey(0), prefixEnd(refusedPrefix), nil); err != nil {
		return err
	}
	if err := s.commitLocal(b, pebble.Sync); err != nil {
		return err
	}
	s.applied.Store(0)
	return nil
}

// Empty reports whether the store holds no record at all.
func (s *Store) Empty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, err
	}
	defer it.Close()
	return !it.First(), nil
}
