package faultfs

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble runs on faultfs through power cuts: what it wrote with Sync before
// the cut is there after the crash, what it wrote after the cut is not.
func TestPebbleSurvivesPowerCut(t *testing.T) {
	for seed := uint64(0); seed < 10; seed++ {
		fs := New()
		open := func(fs *FS) *pebble.DB {
			t.Helper()
			db, err := pebble.Open("/data/meta", &pebble.Options{FS: fs, Logger: quietLogger{t}})
			if err != nil {
				t.Fatalf("seed %d: open: %v", seed, err)
			}
			return db
		}
		db := open(fs)
		key := func(i int) []byte { return []byte(fmt.Sprintf("key-%04d", i)) }
		for i := 0; i < 200; i++ {
			if err := db.Set(key(i), key(i), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if i == 100 {
				if err := db.Flush(); err != nil { // an sstable and a new MANIFEST version
					t.Fatal(err)
				}
			}
		}
		if err := db.Set([]byte("unsynced"), []byte("x"), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		fs.CutPowerUnnoticed()
		if err := db.Set([]byte("after the cut"), []byte("x"), pebble.Sync); err != nil {
			t.Fatalf("seed %d: a write after an unnoticed cut: %v", seed, err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("seed %d: close after an unnoticed cut: %v", seed, err)
		}

		after := fs.Crash(rand.New(rand.NewPCG(seed, 7)))
		db = open(after)
		for i := 0; i < 200; i++ {
			v, closer, err := db.Get(key(i))
			if err != nil {
				t.Fatalf("seed %d: synced %s after the crash: %v", seed, key(i), err)
			}
			if string(v) != string(key(i)) {
				t.Fatalf("seed %d: %s = %q after the crash", seed, key(i), v)
			}
			closer.Close()
		}
		if _, _, err := db.Get([]byte("after the cut")); err != pebble.ErrNotFound {
			t.Fatalf("seed %d: a key written after the power cut: %v, want ErrNotFound", seed, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// quietLogger sends Pebble's errors to the test log; Fatalf panics, as
// Pebble expects (it may be called from Pebble's goroutines).
type quietLogger struct{ t *testing.T }

func (l quietLogger) Infof(string, ...any) {}
func (l quietLogger) Errorf(format string, args ...any) {
	l.t.Logf("pebble: "+format, args...)
}
func (l quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
