package faultfs

import (
	"errors"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func mkdir(t *testing.T, fs *FS, dir string) {
	t.Helper()
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, fs *FS, from, to string) {
	t.Helper()
	if err := fs.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, fs *FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("List(%s): %v", dir, err)
	}
	return names
}

func wantList(t *testing.T, fs *FS, dir string, want ...string) {
	t.Helper()
	if got := list(t, fs, dir); !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}
}

func wantFile(t *testing.T, fs *FS, name, want string) {
	t.Helper()
	if got, err := read(fs, name); err != nil || got != want {
		t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
	}
}

func crash(fs *FS) *FS {
	fs.CutPower()
	return fs.Crash(rand.New(rand.NewPCG(1, 2)))
}

// snapshotDir builds /snaps/1.tmp holding a synced file, all durable, the
// way the Raft snapshot store does before renaming it to /snaps/1.
func snapshotDir(t *testing.T) *FS {
	fs := New()
	mkdir(t, fs, "/snaps/1.tmp")
	write(t, fs, "/snaps/1.tmp/state", "snapshot", true)
	syncDir(t, fs, "/snaps/1.tmp")
	syncDir(t, fs, "/snaps")
	syncDir(t, fs, "/")
	return fs
}

// A directory renamed within its parent: the old name until the parent is
// synced, the new one after, with the entries it had made durable.
func TestDirRenameCrash(t *testing.T) {
	fs := snapshotDir(t)
	rename(t, fs, "/snaps/1.tmp", "/snaps/1")
	wantList(t, fs, "/snaps", "1")
	wantFile(t, fs, "/snaps/1/state", "snapshot")
	after := crash(fs)
	wantList(t, after, "/snaps", "1.tmp")
	wantFile(t, after, "/snaps/1.tmp/state", "snapshot")

	fs = snapshotDir(t)
	rename(t, fs, "/snaps/1.tmp", "/snaps/1")
	syncDir(t, fs, "/snaps")
	after = crash(fs)
	wantList(t, after, "/snaps", "1")
	wantFile(t, after, "/snaps/1/state", "snapshot")
	// The rebooted tree works as any: a rename there and a crash again.
	rename(t, after, "/snaps/1", "/snaps/2")
	syncDir(t, after, "/snaps")
	wantList(t, crash(after), "/snaps", "2")
}

// A rename between two directories reaches the disk as two halves, one per
// parent's fsync: the new parent alone synced shows both names (a file stays
// one inode; a directory keeps its first name), the old one alone neither.
func TestRenameAcrossParentsCrash(t *testing.T) {
	setup := func() *FS {
		fs := New()
		mkdir(t, fs, "/a/dir")
		mkdir(t, fs, "/b")
		write(t, fs, "/a/f", "file", true)
		write(t, fs, "/a/dir/g", "in dir", true)
		for _, d := range []string{"/a/dir", "/a", "/b", "/"} {
			syncDir(t, fs, d)
		}
		rename(t, fs, "/a/f", "/b/f")
		rename(t, fs, "/a/dir", "/b/dir")
		return fs
	}

	after := crash(setup())
	wantList(t, after, "/a", "dir", "f")
	wantList(t, after, "/b")

	fs := setup()
	syncDir(t, fs, "/b")
	after = crash(fs)
	wantList(t, after, "/a", "dir", "f")
	wantList(t, after, "/b", "f") // the directory keeps its first name, /a/dir
	wantFile(t, after, "/a/dir/g", "in dir")
	f, _ := after.OpenReadWrite("/a/f", vfs.WriteCategoryUnspecified)
	if _, err := f.WriteAt([]byte("+"), 4); err != nil {
		t.Fatal(err)
	}
	wantFile(t, after, "/b/f", "file+")

	fs = setup()
	syncDir(t, fs, "/a")
	after = crash(fs)
	wantList(t, after, "/a")
	wantList(t, after, "/b")

	fs = setup()
	syncDir(t, fs, "/a")
	syncDir(t, fs, "/b")
	after = crash(fs)
	wantList(t, after, "/a")
	wantList(t, after, "/b", "dir", "f")
	wantFile(t, after, "/b/dir/g", "in dir")
	wantFile(t, after, "/b/f", "file")
}

// Half-durable renames can make the durable entries a cycle; the image
// breaks it and stays a tree.
func TestDurableCycleIsBroken(t *testing.T) {
	fs := New()
	mkdir(t, fs, "/a/b")
	syncDir(t, fs, "/a")
	syncDir(t, fs, "/")
	rename(t, fs, "/a/b", "/b")
	syncDir(t, fs, "/") // durable: / holds a and b, a holds b
	rename(t, fs, "/a", "/b/a")
	syncDir(t, fs, "/b") // durable: b holds a
	after := crash(fs)
	wantList(t, after, "/", "a")
	wantList(t, after, "/a", "b")
	wantList(t, after, "/a/b")
	if u := after.Used(); u != 0 {
		t.Fatalf("Used = %d", u)
	}
}

// A renamed directory's entries keep their own durability: what it had
// synced stays, what it had not is lost unless it is synced, under its new
// name, before the crash.
func TestRenamedDirKeepsItsEntries(t *testing.T) {
	for _, syncAfter := range []bool{false, true} {
		fs := snapshotDir(t)
		write(t, fs, "/snaps/1.tmp/late", "unnamed", true)
		rename(t, fs, "/snaps/1.tmp", "/snaps/1")
		syncDir(t, fs, "/snaps")
		if syncAfter {
			syncDir(t, fs, "/snaps/1")
		}
		after := crash(fs)
		if syncAfter {
			wantList(t, after, "/snaps/1", "late", "state")
			wantFile(t, after, "/snaps/1/late", "unnamed")
		} else {
			wantList(t, after, "/snaps/1", "state")
		}
	}
}

// Two names of one file stay one inode through a crash: a write through one
// shows through the other, and the disk counts it once.
func TestHardLinkSurvivesCrash(t *testing.T) {
	fs := New()
	mkdir(t, fs, "/d")
	write(t, fs, "/a", "linked", true)
	if err := fs.Link("/a", "/d/b"); err != nil {
		t.Fatal(err)
	}
	syncDir(t, fs, "/d")
	syncDir(t, fs, "/")
	after := crash(fs)
	wantFile(t, after, "/d/b", "linked")
	write(t, after, "/a", "+more", true)
	wantFile(t, after, "/d/b", "linked+more")
	if u := after.Used(); u != int64(len("linked+more")) {
		t.Fatalf("Used = %d after the crash, want the file once", u)
	}
	again := crash(after)
	write(t, again, "/d/b", "!", false)
	wantFile(t, again, "/a", "linked+more!")
}

// RemoveAll detaches a tree from the running system at once; the disk has
// it until the parent is synced.
func TestRemoveAllNeedsParentSync(t *testing.T) {
	setup := func() *FS {
		fs := New()
		mkdir(t, fs, "/t/x")
		write(t, fs, "/t/x/y", "deep", true)
		write(t, fs, "/t/z", "shallow", true)
		for _, d := range []string{"/t/x", "/t", "/"} {
			syncDir(t, fs, d)
		}
		if err := fs.RemoveAll("/t"); err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Stat("/t/x/y"); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("Stat after RemoveAll: %v, want ENOENT", err)
		}
		wantList(t, fs, "/")
		return fs
	}
	after := crash(setup())
	wantList(t, after, "/t", "x", "z")
	wantFile(t, after, "/t/x/y", "deep")
	wantFile(t, after, "/t/z", "shallow")

	fs := setup()
	syncDir(t, fs, "/")
	wantList(t, crash(fs), "/")

	if err := New().RemoveAll("/missing/too"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
}

// Remove refuses a non-empty directory; its removal too waits for the
// parent's fsync.
func TestRemoveDir(t *testing.T) {
	fs := New()
	mkdir(t, fs, "/d/e")
	syncDir(t, fs, "/d")
	syncDir(t, fs, "/")
	if err := fs.Remove("/d"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("Remove of a non-empty directory: %v, want ENOTEMPTY", err)
	}
	if err := fs.Remove("/d/e"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove("/d"); err != nil {
		t.Fatal(err)
	}
	syncDir(t, fs, "/")
	after := crash(fs)
	wantList(t, after, "/")
}

// rename(2)'s rules: a directory may replace an empty directory only, a
// file a file only, and a directory cannot move under itself.
func TestRenameRules(t *testing.T) {
	fs := New()
	mkdir(t, fs, "/src/sub")
	write(t, fs, "/src/f", "in src", true)
	mkdir(t, fs, "/empty")
	mkdir(t, fs, "/full/x")
	write(t, fs, "/file", "file", true)
	for _, d := range []string{"/src", "/", "/full"} {
		syncDir(t, fs, d)
	}
	for _, c := range []struct {
		from, to string
		want     error
	}{
		{"/src", "/full", syscall.ENOTEMPTY},
		{"/file", "/empty", syscall.EISDIR},
		{"/src", "/file", syscall.ENOTDIR},
		{"/src", "/src/sub/deeper", syscall.EINVAL},
		{"/src", "/src/new", syscall.EINVAL},
		{"/missing", "/x", syscall.ENOENT},
		{"/file", "/missing/x", syscall.ENOENT},
		{"/file", "/file/x", syscall.ENOTDIR},
	} {
		if err := fs.Rename(c.from, c.to); !errors.Is(err, c.want) {
			t.Fatalf("Rename(%s, %s): %v, want %v", c.from, c.to, err, c.want)
		}
	}
	rename(t, fs, "/src", "/src") // the same name: nothing happens
	rename(t, fs, "/src", "/empty")
	wantList(t, fs, "/", "empty", "file", "full")
	wantList(t, fs, "/empty", "f", "sub")
	wantFile(t, fs, "/empty/f", "in src")

	// Before / is synced the disk has both directories as they were.
	after := fs.Crash(rand.New(rand.NewPCG(3, 3)))
	wantList(t, after, "/", "empty", "file", "full", "src")
	wantList(t, after, "/empty")
	wantList(t, after, "/src", "f", "sub")

	syncDir(t, fs, "/")
	after = crash(fs)
	wantList(t, after, "/", "empty", "file", "full")
	wantList(t, after, "/empty", "f", "sub")
	wantFile(t, after, "/empty/f", "in src")
}

// Used counts each file once, however many names it has, and only while
// one of them is in the running tree.
func TestUsedCountsLinksOnce(t *testing.T) {
	fs := New()
	mkdir(t, fs, "/d")
	mkdir(t, fs, "/e/f")
	write(t, fs, "/d/a", "12345", false)
	write(t, fs, "/d/other", "67", false)
	for _, name := range []string{"/d/b", "/e/f/c"} {
		if err := fs.Link("/d/a", name); err != nil {
			t.Fatal(err)
		}
	}
	if u := fs.Used(); u != 7 {
		t.Fatalf("Used = %d, want 7 (5 bytes under three names, 2 under one)", u)
	}
	if err := fs.Remove("/d/a"); err != nil {
		t.Fatal(err)
	}
	if err := fs.RemoveAll("/d"); err != nil {
		t.Fatal(err)
	}
	if u := fs.Used(); u != 5 {
		t.Fatalf("Used = %d, want 5 (/e/f/c is left)", u)
	}
	fs.SetCapacity(6)
	f, _ := fs.OpenReadWrite("/e/f/c", vfs.WriteCategoryUnspecified)
	if _, err := f.WriteAt([]byte("ab"), 5); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the capacity: %v, want ENOSPC", err)
	}
	if _, err := f.WriteAt([]byte("a"), 5); err != nil {
		t.Fatalf("write within the capacity: %v", err)
	}
	if err := fs.RemoveAll("/e"); err != nil {
		t.Fatal(err)
	}
	if u := fs.Used(); u != 0 {
		t.Fatalf("Used = %d, want 0", u)
	}
}

// The same rng gives the same rebooted disk.
func TestCrashIsDeterministic(t *testing.T) {
	fs := New()
	for _, d := range []string{"/a", "/b/c", "/b/d"} {
		mkdir(t, fs, d)
	}
	for _, name := range []string{"/a/1", "/a/2", "/b/c/3", "/b/d/4", "/5"} {
		write(t, fs, name, "synced", true)
		write(t, fs, name, "-unsynced tail of some length", false)
	}
	for _, d := range []string{"/a", "/b/c", "/b/d", "/b", "/"} {
		syncDir(t, fs, d)
	}
	fs.CutPower()
	for seed := uint64(0); seed < 20; seed++ {
		x, y := fs.Crash(rand.New(rand.NewPCG(seed, 9))), fs.Crash(rand.New(rand.NewPCG(seed, 9)))
		for _, name := range []string{"/a/1", "/a/2", "/b/c/3", "/b/d/4", "/5"} {
			gx, _ := read(x, name)
			gy, _ := read(y, name)
			if gx != gy {
				t.Fatalf("seed %d: %s = %q and %q", seed, name, gx, gy)
			}
		}
	}
}
