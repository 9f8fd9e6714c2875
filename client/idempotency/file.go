package idempotency

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/dmqio/dmq/client/internal/boltcommit"
	bolt "go.etcd.io/bbolt"
)

// The file holds two buckets:
//
//	keys:   key → recorded-at (Unix nanoseconds, 8 bytes big-endian)
//	expiry: recorded-at ++ key → empty, so that expiry reads the oldest first
var (
	bucketKeys   = []byte("keys")
	bucketExpiry = []byte("expiry")
)

// expireBatch bounds the records deleted in one transaction, so expiry never
// holds the write lock for long nor builds a large transaction.
const expireBatch = 1000

// FileStore is a Store in one local file (bbolt): every Record is fsynced
// before it returns, Records that arrive while a commit runs share the next
// transaction and fsync, and records older than the TTL are deleted in the
// background. It is safe for
// concurrent use; a file can be open in one FileStore at a time.
type FileStore struct {
	db     *bolt.DB
	commit *boltcommit.Committer
	path   string
	opts   fileOptions

	quit chan struct{} // closed by Close: stops the expiry loop
	wg   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// FileOption configures OpenFileStore.
type FileOption func(*fileOptions)

type fileOptions struct {
	ttl         time.Duration
	expireEvery time.Duration
	onError     func(error)
	lockTimeout time.Duration
	now         func() time.Time // the clock; tests replace it
}

// TTL sets how long a key is remembered (default 7 days). Choose it longer
// than any redelivery can take: the broker's retention and retry schedule.
// Expired records are deleted and their pages reused, so the file stops
// growing once it holds a TTL's worth of keys (bbolt never shrinks it).
func TTL(d time.Duration) FileOption { return func(o *fileOptions) { o.ttl = d } }

// ExpireEvery sets how often expired records are deleted from the file
// (default: every minute, or every TTL if that is shorter). Seen ignores an
// expired record whether or not it was deleted yet.
func ExpireEvery(d time.Duration) FileOption { return func(o *fileOptions) { o.expireEvery = d } }

// OnError receives errors of the background expiry (default: ignored; the
// next round tries again).
func OnError(f func(error)) FileOption { return func(o *fileOptions) { o.onError = f } }

// OpenFileStore opens the store in the file at path, creating it if needed.
// It fails after a second if another FileStore (or process) has the file
// open.
func OpenFileStore(path string, opts ...FileOption) (*FileStore, error) {
	o := fileOptions{ttl: 7 * 24 * time.Hour, onError: func(error) {}, lockTimeout: time.Second, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.ttl <= 0 {
		return nil, fmt.Errorf("open idempotency store %s: TTL %s is not positive", path, o.ttl)
	}
	if o.expireEvery <= 0 {
		o.expireEvery = min(time.Minute, o.ttl)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open idempotency store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open idempotency store %s: create buckets: %w", path, err)
	}
	s := &FileStore{db: db, commit: boltcommit.New(db, nil), path: path, opts: o, quit: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.expireLoop()
	}()
	return s, nil
}

// Seen reports whether key was recorded less than the TTL ago.
func (s *FileStore) Seen(_ context.Context, key string) (bool, error) {
	var seen bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(key))
		if len(v) == 8 {
			recorded := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			seen = s.opts.now().Sub(recorded) < s.opts.ttl
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("idempotency store %s: look up: %w", s.path, err)
	}
	return seen, nil
}

// Record remembers key from now on, for the TTL. It returns once the record
// is fsynced; Records called concurrently share commits.
func (s *FileStore) Record(_ context.Context, key string) error {
	ts := binary.BigEndian.AppendUint64(nil, uint64(s.opts.now().UnixNano()))
	k := []byte(key)
	// The committer may call this function more than once: it only writes
	// inside its transaction.
	err := s.commit.Write(func(tx *bolt.Tx) error {
		keys, expiry := tx.Bucket(bucketKeys), tx.Bucket(bucketExpiry)
		if old := keys.Get(k); old != nil {
			if err := expiry.Delete(concat(old, k)); err != nil {
				return err
			}
		}
		if err := keys.Put(k, ts); err != nil {
			return err
		}
		return expiry.Put(concat(ts, k), nil)
	})
	if err != nil {
		return fmt.Errorf("idempotency store %s: record: %w", s.path, err)
	}
	return nil
}

// Close stops the background expiry and closes the file. It is safe to
// call twice.
func (s *FileStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.wg.Wait()
		s.commit.Close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close idempotency store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// expireLoop deletes expired records until Close. A ticker wakes it: expiry
// only reclaims space (Seen already ignores expired records), so when it
// runs does not matter for correctness.
func (s *FileStore) expireLoop() {
	t := time.NewTicker(s.opts.expireEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if _, err := s.expire(s.opts.now()); err != nil {
				s.opts.onError(err)
			}
		}
	}
}

// expire deletes every record older than the TTL at now, in transactions of
// at most expireBatch records, and returns how many it deleted. It stops
// early on Close.
func (s *FileStore) expire(now time.Time) (int, error) {
	total := 0
	for {
		n, err := s.expireOnce(now, expireBatch)
		total += n
		if err != nil || n < expireBatch {
			return total, err
		}
		select {
		case <-s.quit:
			return total, nil
		default:
		}
	}
}

// expireOnce deletes up to limit of the oldest records older than the TTL at
// now in one transaction.
func (s *FileStore) expireOnce(now time.Time, limit int) (int, error) {
	cutoff := binary.BigEndian.AppendUint64(nil, uint64(now.Add(-s.opts.ttl).UnixNano()))
	n := 0
	err := s.commit.Write(func(tx *bolt.Tx) error {
		keys, expiry := tx.Bucket(bucketKeys), tx.Bucket(bucketExpiry)
		// Collect first: deleting under a moving bbolt cursor can skip keys.
		var old [][]byte
		c := expiry.Cursor()
		for k, _ := c.First(); k != nil && len(old) < limit && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		for _, k := range old {
			ts, key := k[:8], k[8:]
			// The key may have been recorded again since: its newer
			// record has its own expiry entry.
			if bytes.Equal(keys.Get(key), ts) {
				if err := keys.Delete(key); err != nil {
					return err
				}
			}
			if err := expiry.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("idempotency store %s: expire: %w", s.path, err)
	}
	return n, nil
}

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
