package faultfs

import (
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
)

func write(t *testing.T, fs *FS, name, data string, sync bool) {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := f.Size()
	if _, err := f.WriteAt([]byte(data), n); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func read(fs *FS, name string) (string, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return "", err
	}
	n, _ := f.Size()
	b := make([]byte, n)
	f.ReadAt(b, 0)
	return string(b), nil
}

// Only fsynced contents under fsynced names survive a crash; the rest is
// lost, torn or zero-filled, but never reordered into the synced part.
func TestCrashKeepsWhatWasSynced(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		fs := New()
		if err := fs.MkdirAll("/d", 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, fs, "/d/unnamed", "synced data, unsynced name", true)
		if err := fs.SyncDir("/"); err != nil {
			t.Fatal(err)
		}
		if err := fs.SyncDir("/d"); err != nil {
			t.Fatal(err)
		}
		write(t, fs, "/d/a", "durable", true)
		write(t, fs, "/d/b", "lost name", true)
		if err := fs.SyncDir("/d"); err != nil {
			t.Fatal(err)
		}
		write(t, fs, "/d/a", "+tail", false)
		if err := fs.Remove("/d/b"); err != nil { // removal not synced: b comes back
			t.Fatal(err)
		}
		write(t, fs, "/d/c", "never named durably", true)
		fs.CutPower()
		if _, err := fs.ListFiles("/d"); !errors.Is(err, syscall.EIO) {
			t.Fatalf("after the power cut: %v, want EIO", err)
		}
		after := fs.Crash(rand.New(rand.NewPCG(seed, 1)))
		names, err := after.ListFiles("/d")
		if err != nil || len(names) != 3 || names[0] != "a" || names[1] != "b" || names[2] != "unnamed" {
			t.Fatalf("seed %d: files %v, %v; want a, b, unnamed", seed, names, err)
		}
		a, _ := read(after, "/d/a")
		if len(a) < len("durable") || a[:len("durable")] != "durable" || len(a) > len("durable+tail") {
			t.Fatalf("seed %d: a = %q, want durable plus at most +tail or zeros", seed, a)
		}
		if tail := a[len("durable"):]; tail != "+tail"[:min(len(tail), 5)] && tail != string(make([]byte, len(tail))) {
			t.Fatalf("seed %d: a's tail %q is neither a prefix of the write nor zeros", seed, tail)
		}
	}
}

func TestInjectedFaults(t *testing.T) {
	fs := New()
	write(t, fs, "/f", "12345", true)
	if err := fs.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	f, _ := fs.OpenFile("/f", os.O_RDWR, 0)
	fs.SetCapacity(8)
	if _, err := f.WriteAt([]byte("6789"), 5); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write beyond the capacity: %v, want ENOSPC", err)
	}
	if got, _ := read(fs, "/f"); got != "12345" {
		t.Fatalf("a failed write changed the file to %q", got)
	}
	fs.SetCapacity(0)
	fs.FailSyncs(syscall.EIO)
	if _, err := f.WriteAt([]byte("6"), 5); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: %v, want EIO", err)
	}
	fs.FailSyncs(nil)
	fs.FailWrites(syscall.EIO)
	if _, err := f.WriteAt([]byte("7"), 6); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write: %v, want EIO", err)
	}
	fs.FailWrites(nil)
	if got := fs.Crash(rand.New(rand.NewPCG(1, 1))); got == nil {
		t.Fatal("no crash clone")
	} else if s, _ := read(got, "/f"); s[:5] != "12345" {
		t.Fatalf("after the crash: %q, want the synced 12345 first", s)
	}
}
