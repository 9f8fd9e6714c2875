package boltcommit

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestCommitterFailingWriteDoesNotFailItsGroup(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := New(db, nil)
	bad := errors.New("bad write")
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Write(func(tx *bolt.Tx) error {
				if i == 7 {
					return bad
				}
				b, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				return b.Put([]byte(fmt.Sprint(i)), []byte("v"))
			})
		}()
	}
	wg.Wait()
	c.Close()
	for i, err := range errs {
		if want := error(nil); i == 7 {
			if !errors.Is(err, bad) {
				t.Errorf("write %d = %v, want %v", i, err, bad)
			}
		} else if err != want {
			t.Errorf("write %d = %v, want nil", i, err)
		}
	}
	db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket([]byte("b")).Stats().KeyN; got != n-1 {
			t.Errorf("%d keys stored, want %d (every write but the failing one)", got, n-1)
		}
		return nil
	})
	if err := c.Write(func(*bolt.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close = %v, want ErrClosed", err)
	}
}
