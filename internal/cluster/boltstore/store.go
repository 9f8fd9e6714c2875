// Package boltstore is a hashicorp/raft LogStore and StableStore in one bbolt file.
//
// It does the job of github.com/hashicorp/raft-boltdb/v2, which cannot be built together with
// hashicorp/raft v1.8.0 (raft-boltdb/v2 v2.3.1 imports go-metrics/compat, a package that the
// go-metrics v0.7.0 required by raft v1.8.0 no longer has). It uses go.etcd.io/bbolt, which
// DMQ already depends on, with bbolt's defaults: every Store call is one transaction, fsynced
// before it returns.
//
// Layout: bucket "logs" maps the big-endian uint64 index to an encoded raft.Log; bucket
// "stable" holds the StableStore's keys. A log entry is encoded as
//
//	version u8 (=1) | index u64 | term u64 | type u8 | appended-at unix nanos i64 |
//	data (u32 len + bytes) | extensions (u32 len + bytes)
//
// all integers big-endian.
package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketLogs   = []byte("logs")
	bucketStable = []byte("stable")
)

// ErrKeyNotFound is returned by Get and GetUint64 for a missing key. hashicorp/raft tests
// the error's text ("not found") rather than its identity, so the text must not change.
var ErrKeyNotFound = errors.New("not found")

// ErrCorrupt is matched by errors.Is for a log entry that cannot be decoded.
var ErrCorrupt = errors.New("boltstore: corrupt log entry")

// Store is a raft.LogStore and raft.StableStore backed by one bbolt file.
type Store struct {
	db   *bolt.DB
	path string
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens or creates the store at path. It fails rather than wait if another process
// holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: %s is locked by another process", path)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketLogs); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketStable)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: create buckets in %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// FirstIndex returns the first stored index, 0 when the log is empty.
func (s *Store) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last stored index, 0 when the log is empty.
func (s *Store) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(key(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		if err := decodeLog(v, log); err != nil {
			return fmt.Errorf("%w: %s index %d: %v", ErrCorrupt, s.path, index, err)
		}
		return nil
	})
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one fsynced transaction.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := b.Put(key(l.Index), encodeLog(l)); err != nil {
				return fmt.Errorf("boltstore: store index %d: %w", l.Index, err)
			}
		}
		return nil
	})
}

// DeleteRange deletes entries min to max, both included.
func (s *Store) DeleteRange(min, max uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(key(min)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > max {
				break
			}
			if err := c.Delete(); err != nil {
				return fmt.Errorf("boltstore: delete range [%d, %d]: %w", min, max, err)
			}
		}
		return nil
	})
}

// Set stores a stable key.
func (s *Store) Set(k, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStable).Put(k, v)
	})
}

// Get returns a stable key's value, or ErrKeyNotFound.
func (s *Store) Get(k []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		got := tx.Bucket(bucketStable).Get(k)
		if got == nil {
			return ErrKeyNotFound
		}
		v = append([]byte(nil), got...)
		return nil
	})
	return v, err
}

// SetUint64 stores a uint64 under a stable key.
func (s *Store) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

// GetUint64 returns the uint64 under a stable key, or ErrKeyNotFound.
func (s *Store) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("boltstore: %s: stable key %q holds %d bytes, not a uint64", s.path, k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func key(index uint64) []byte { return binary.BigEndian.AppendUint64(nil, index) }
