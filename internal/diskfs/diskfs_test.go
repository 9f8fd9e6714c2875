package diskfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The files of vfs.Default, production's file system, can be truncated:
// they embed *os.File.
func TestDefaultFilesTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(Truncater); !ok {
		t.Fatalf("vfs.Default.Create's %T is not a Truncater", f)
	}
	if err := Truncate(f, 4); err != nil {
		t.Fatal(err)
	}
	rw, err := vfs.Default.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if err := Truncate(rw, 2); err != nil {
		t.Fatalf("truncate through OpenReadWrite: %v", err)
	}
	if st, _ := os.Stat(path); st.Size() != 2 {
		t.Fatalf("file is %d bytes, want 2", st.Size())
	}
}

func TestMkdirAllAndList(t *testing.T) {
	dir := t.TempDir()
	if err := MkdirAll(vfs.Default, filepath.Join(dir, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dirs, err := ListDirs(vfs.Default, filepath.Join(dir, "a"))
	if err != nil || len(dirs) != 1 || dirs[0] != "b" {
		t.Fatalf("ListDirs = %v, %v; want b", dirs, err)
	}
	files, err := ListFiles(vfs.Default, filepath.Join(dir, "a"))
	if err != nil || len(files) != 1 || files[0] != "f" {
		t.Fatalf("ListFiles = %v, %v; want f", files, err)
	}
	if err := MkdirAll(vfs.Default, filepath.Join(dir, "a", "f", "x")); err == nil {
		t.Fatal("MkdirAll under a file succeeded")
	}
}
