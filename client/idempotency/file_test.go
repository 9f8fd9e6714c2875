package idempotency

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/dmqtest"
	bolt "go.etcd.io/bbolt"
)

// fakeClock is a settable clock for FileStore.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func withClock(c *fakeClock) FileOption { return func(o *fileOptions) { o.now = c.Now } }

// openFile opens a FileStore at path and closes it at the end of the test,
// after checking that its two buckets agree.
func openFile(t *testing.T, path string, opts ...FileOption) *FileStore {
	t.Helper()
	s, err := OpenFileStore(path, opts...)
	if err != nil {
		t.Fatalf("OpenFileStore(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if keys, expiry, err := s.counts(); err == nil && keys != expiry {
			t.Errorf("store has %d keys but %d expiry entries", keys, expiry)
		}
		s.Close()
	})
	return s
}

// counts returns the number of records in each bucket.
func (s *FileStore) counts() (keys, expiry int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		keys = tx.Bucket(bucketKeys).Stats().KeyN
		expiry = tx.Bucket(bucketExpiry).Stats().KeyN
		return nil
	})
	return keys, expiry, err
}

func mustSeen(t *testing.T, s Store, key string, want bool) {
	t.Helper()
	seen, err := s.Seen(context.Background(), key)
	if err != nil {
		t.Fatalf("Seen(%q): %v", key, err)
	}
	if seen != want {
		t.Fatalf("Seen(%q) = %v, want %v", key, seen, want)
	}
}

func TestFileStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idem.db")
	s := openFile(t, path)
	if err := s.Record(context.Background(), "order-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if _, err := s.Seen(context.Background(), "order-1"); err == nil {
		t.Fatal("Seen on a closed store succeeded")
	}
	s = openFile(t, path)
	mustSeen(t, s, "order-1", true)
	mustSeen(t, s, "order-2", false)
}

func TestFileStoreIsOpenOnlyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idem.db")
	openFile(t, path)
	s, err := OpenFileStore(path, func(o *fileOptions) { o.lockTimeout = 50 * time.Millisecond })
	if err == nil {
		s.Close()
		t.Fatal("a second OpenFileStore of an open file succeeded")
	}
}

func TestFileStoreForgetsKeysAfterTTL(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openFile(t, filepath.Join(t.TempDir(), "idem.db"), TTL(time.Hour), withClock(clock))
	ctx := context.Background()
	if err := s.Record(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Minute)
	if err := s.Record(ctx, "young"); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * time.Minute)
	mustSeen(t, s, "old", false) // expired, even before it is deleted
	mustSeen(t, s, "young", true)

	// Expiry deletes exactly the expired record.
	n, err := s.expire(clock.Now())
	if err != nil || n != 1 {
		t.Fatalf("expire = %d, %v; want 1 record deleted", n, err)
	}
	if keys, expiry, _ := s.counts(); keys != 2 || expiry != 2 {
		t.Fatalf("after expiry the store holds %d keys and %d expiry entries, want 2 and 2", keys, expiry)
	}
	// A key recorded again lives a TTL from its newest record.
	clock.Advance(20 * time.Minute)
	if err := s.Record(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Minute) // "young" is 71 minutes old, "again" 20
	if n, err := s.expire(clock.Now()); err != nil || n != 1 {
		t.Fatalf("expire = %d, %v; want 1 record deleted", n, err)
	}
	mustSeen(t, s, "young", false)
	mustSeen(t, s, "again", true)
}

func TestFileStoreExpiresInBoundedBatches(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openFile(t, filepath.Join(t.TempDir(), "idem.db"), TTL(time.Hour), withClock(clock))
	const n = 2*expireBatch + 500
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Record(context.Background(), fmt.Sprint("k", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	clock.Advance(2 * time.Hour)
	if got, err := s.expireOnce(clock.Now(), expireBatch); err != nil || got != expireBatch {
		t.Fatalf("expireOnce = %d, %v; want %d (one batch)", got, err, expireBatch)
	}
	if got, err := s.expire(clock.Now()); err != nil || got != n-expireBatch {
		t.Fatalf("expire = %d, %v; want the remaining %d", got, err, n-expireBatch)
	}
	if keys, _, _ := s.counts(); keys != 0 {
		t.Fatalf("%d keys left after expiring all, want 0", keys)
	}
}

func TestFileStoreExpiresInBackground(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openFile(t, filepath.Join(t.TempDir(), "idem.db"), TTL(time.Hour), ExpireEvery(5*time.Millisecond), withClock(clock))
	for i := 0; i < 10; i++ {
		if err := s.Record(context.Background(), fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _, _ := s.counts(); keys != 10 {
		t.Fatalf("store holds %d keys before the TTL passed, want 10", keys)
	}
	clock.Advance(time.Hour + time.Second)
	dmqtest.Eventually(t, 10*time.Second, "background expiry to delete every key", func() bool {
		keys, _, err := s.counts()
		return err == nil && keys == 0
	})
}
