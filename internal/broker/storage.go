package broker

import (
	"errors"
	"path/filepath"

	"github.com/dmqio/dmq/internal/dirlock"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
)

// Storage keeps what the broker stores: the topic logs and the metadata store. On a
// single node it is the local disk (localStorage); on a cluster node it is the shard's
// replicated store (package replica), where every change goes through the Raft log and
// is applied on every replica. The broker reads its logs directly and writes them only
// through Storage.
type Storage interface {
	// Meta is the metadata store (in a cluster, one whose writes are replicated).
	Meta() *meta.Store
	// OpenLog opens the log of a topic, or returns the one already open. opts carries
	// the broker's settings; Dir and FS are filled in by the storage.
	OpenLog(topic string, opts seglog.Options) (*seglog.Log, error)
	// Append stores payloads at the end of a topic's log and calls done once they are
	// durable, with the offset of the first, as seglog.Log.AppendAsync does.
	Append(topic string, l *seglog.Log, payloads [][]byte, done func(first uint64, err error))
	// DeleteSegmentsBefore removes a topic's oldest segments, those wholly before off.
	DeleteSegmentsBefore(topic string, l *seglog.Log, off uint64) (int, error)
	// RemoveLog deletes a topic's log (l, if open, is closed first; nil is fine).
	RemoveLog(topic string, l *seglog.Log) error
	// CloseLog tells the storage the broker no longer uses l.
	CloseLog(topic string, l *seglog.Log) error
	// Settle returns once every change made so far is visible to reads: a cluster
	// leader's unawaited metadata writes (positions, counters, traces) are applied to
	// its replica. A single node's are visible at once.
	Settle() error
	// Close releases the storage when the broker closes.
	Close() error
}

// localStorage is Storage on this node's disk, for a broker without a cluster.
type localStorage struct {
	cfg  Config
	meta *meta.Store
	lock *dirlock.Lock
}

// openLocalStorage locks the data directory and opens the metadata store.
func openLocalStorage(cfg Config) (*localStorage, error) {
	if err := diskfs.MkdirAll(cfg.FS, filepath.Join(cfg.DataDir, "topics")); err != nil {
		return nil, errors.Join(errors.New("create data directory"), err)
	}
	lock, err := dirlock.Acquire(cfg.FS, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := checkMetaPresent(cfg); err != nil {
		lock.Release()
		return nil, err
	}
	ms, err := meta.Open(filepath.Join(cfg.DataDir, "meta"), cfg.Logger, cfg.FS)
	if err != nil {
		lock.Release()
		return nil, err
	}
	return &localStorage{cfg: cfg, meta: ms, lock: lock}, nil
}

func (s *localStorage) Meta() *meta.Store { return s.meta }

func (s *localStorage) topicDir(name string) string {
	return filepath.Join(s.cfg.DataDir, "topics", name)
}

func (s *localStorage) OpenLog(topic string, opts seglog.Options) (*seglog.Log, error) {
	opts.FS, opts.Dir = s.cfg.FS, s.topicDir(topic)
	return seglog.Open(opts)
}

func (s *localStorage) Append(_ string, l *seglog.Log, payloads [][]byte, done func(uint64, error)) {
	l.AppendAsync(payloads, done)
}

func (s *localStorage) DeleteSegmentsBefore(_ string, l *seglog.Log, off uint64) (int, error) {
	return l.DeleteSegmentsBefore(off)
}

func (s *localStorage) RemoveLog(topic string, l *seglog.Log) error {
	if l != nil {
		l.Close()
	}
	return s.cfg.FS.RemoveAll(s.topicDir(topic))
}

func (s *localStorage) CloseLog(_ string, l *seglog.Log) error { return l.Close() }

func (s *localStorage) Settle() error { return nil }

func (s *localStorage) Close() error {
	err := s.meta.Close()
	s.lock.Release()
	return err
}
