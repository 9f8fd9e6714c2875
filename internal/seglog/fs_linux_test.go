package seglog

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The log's files get 0644 less the umask, though vfs.FS.Create asks for
// 0666: with umask 0, segments and indexes are 0644.
func TestFileMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, SegmentBytes: 256})
	appendSeq(t, l, 20, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) < 3 {
		t.Fatalf("files %v, want segments and an index", names)
	}
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Fatalf("%s has mode %v, want 0644", name, st.Mode().Perm())
		}
	}
}
