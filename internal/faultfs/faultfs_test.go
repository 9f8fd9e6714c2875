package faultfs

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dmqio/dmq/internal/diskfs"
)

func write(t *testing.T, fs *FS, name, data string, sync bool) {
	t.Helper()
	f, err := fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if _, err := f.WriteAt([]byte(data), st.Size()); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func read(fs *FS, name string) (string, error) {
	f, err := fs.Open(name)
	if err != nil {
		return "", err
	}
	st, _ := f.Stat()
	b := make([]byte, st.Size())
	f.ReadAt(b, 0)
	return string(b), nil
}

func syncDir(t *testing.T, fs *FS, dir string) {
	t.Helper()
	if err := diskfs.SyncDir(fs, dir); err != nil {
		t.Fatal(err)
	}
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
		syncDir(t, fs, "/")
		syncDir(t, fs, "/d")
		write(t, fs, "/d/a", "durable", true)
		write(t, fs, "/d/b", "lost name", true)
		syncDir(t, fs, "/d")
		write(t, fs, "/d/a", "+tail", false)
		if err := fs.Remove("/d/b"); err != nil { // removal not synced: b comes back
			t.Fatal(err)
		}
		write(t, fs, "/d/c", "never named durably", true)
		fs.CutPower()
		if _, err := fs.List("/d"); !errors.Is(err, syscall.EIO) {
			t.Fatalf("after the power cut: %v, want EIO", err)
		}
		after := fs.Crash(rand.New(rand.NewPCG(seed, 1)))
		names, err := after.List("/d")
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
	syncDir(t, fs, "/")
	f, _ := fs.OpenReadWrite("/f", vfs.WriteCategoryUnspecified)
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

// After an unnoticed power cut the running system works on, and none of it
// reaches the disk Crash returns; the first cut fixes the image.
func TestUnnoticedCutKeepsNothingAfter(t *testing.T) {
	fs := New()
	write(t, fs, "/a", "before", true)
	syncDir(t, fs, "/")
	fs.CutPowerUnnoticed()
	write(t, fs, "/a", "+after", true)
	write(t, fs, "/b", "new", true)
	syncDir(t, fs, "/")
	if got, _ := read(fs, "/a"); got != "before+after" {
		t.Fatalf("the running system reads %q, want its own writes", got)
	}
	fs.CutPower()
	after := fs.Crash(rand.New(rand.NewPCG(1, 1)))
	if names, _ := after.List("/"); len(names) != 1 || names[0] != "a" {
		t.Fatalf("after the crash: %v, want only a", names)
	}
	if got, _ := read(after, "/a"); got != "before" {
		t.Fatalf("after the crash a = %q, want before", got)
	}
}

// The parts of vfs.FS Pebble needs beyond files: locks, links, renames over
// a file, truncation, disk usage.
func TestFSOperations(t *testing.T) {
	fs := New()
	l, err := fs.Lock("/LOCK")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Lock("/LOCK"); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("second Lock: %v, want EAGAIN", err)
	}
	l.Close()
	if l, err = fs.Lock("/LOCK"); err != nil {
		t.Fatalf("Lock after Close: %v", err)
	}
	l.Close()

	write(t, fs, "/a", "aaaa", true)
	write(t, fs, "/b", "bb", true)
	if err := fs.Link("/a", "/c"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Link("/a", "/b"); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("Link over a file: %v, want EEXIST", err)
	}
	if err := fs.Rename("/c", "/b"); err != nil {
		t.Fatalf("Rename over a file: %v", err)
	}
	if got, _ := read(fs, "/b"); got != "aaaa" {
		t.Fatalf("b = %q after the rename of a link of a, want aaaa", got)
	}
	if u := fs.Used(); u != 4 {
		t.Fatalf("Used = %d, want 4 (one file, two names)", u)
	}
	f, _ := fs.OpenReadWrite("/a", vfs.WriteCategoryUnspecified)
	if err := diskfs.Truncate(f, 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(fs, "/b"); got != "aa" {
		t.Fatalf("b = %q after truncating a, want aa", got)
	}
	ro, _ := fs.Open("/a")
	if err := diskfs.Truncate(ro, 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Truncate of a read-only file: %v, want EINVAL", err)
	}
	fs.SetCapacity(10)
	if du, err := fs.GetDiskUsage("/"); err != nil || du.TotalBytes != 10 || du.UsedBytes != 2 || du.AvailBytes != 8 {
		t.Fatalf("GetDiskUsage = %+v, %v; want 10 total, 2 used, 8 available", du, err)
	}
	if err := fs.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename("/d", "/e"); err != nil {
		t.Fatalf("Rename of a directory: %v", err)
	}
	if names, err := diskfs.ListDirs(fs, "/"); err != nil || len(names) != 1 || names[0] != "e" {
		t.Fatalf("ListDirs = %v, %v; want e", names, err)
	}
}

// Disks cut together keep nothing written to any of them after the cut.
func TestCutPowerTogether(t *testing.T) {
	a, b := New(), New()
	for _, fs := range []*FS{a, b} {
		write(t, fs, "/f", "before", true)
		syncDir(t, fs, "/")
	}
	CutPowerTogether(a, b)
	for _, fs := range []*FS{a, b} {
		write(t, fs, "/f", " after", true)
		if got, _ := read(fs, "/f"); got != "before after" {
			t.Fatalf("the running system reads %q", got)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, fs := range []*FS{a, b} {
		if got, err := read(fs.Crash(rng), "/f"); err != nil || got != "before" {
			t.Fatalf("disk %d after the cut: %q, %v; want what was synced before it", i, got, err)
		}
	}
}
