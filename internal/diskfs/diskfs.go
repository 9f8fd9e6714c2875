// Package diskfs holds what DMQ's stores need on top of pebble's vfs.FS, the
// one file-system seam under every store of a node: production runs on
// vfs.Default, tests on package faultfs (power cuts, torn writes, I/O errors,
// a full disk) or vfs.NewMem.
//
// vfs.File has no Truncate; the files of vfs.Default (they embed *os.File)
// and of faultfs have one, reached through Truncater. Directory entries
// (creations, renames, removals) become durable only when their directory is
// synced: SyncDir, MkdirAll.
package diskfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Truncater is a file whose size can be set, as os.File.Truncate does: cut
// back, or extended with zeros.
type Truncater interface {
	Truncate(size int64) error
}

// ErrNoTruncate is returned by Truncate for a file that is not a Truncater.
var ErrNoTruncate = errors.New("diskfs: file cannot be truncated")

// Truncate sets the size of f, which must be a Truncater.
func Truncate(f vfs.File, size int64) error {
	t, ok := f.(Truncater)
	if !ok {
		return fmt.Errorf("%w (%T)", ErrNoTruncate, f)
	}
	return t.Truncate(size)
}

// SyncDir makes the creations, renames and removals of entries in dir
// durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MkdirAll creates dir and its missing parents, and syncs the parent of each
// one created, so that the new directories survive a power cut.
func MkdirAll(fs vfs.FS, dir string) error {
	var missing []string
	for d := dir; ; d = fs.PathDir(d) {
		if _, err := fs.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if fs.PathDir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if parent := fs.PathDir(missing[i]); parent != missing[i] {
			if err := SyncDir(fs, parent); err != nil {
				return fmt.Errorf("fsync directory %s: %w", parent, err)
			}
		}
	}
	return nil
}

// ListFiles returns the sorted names of the files in dir that are not
// directories.
func ListFiles(fs vfs.FS, dir string) ([]string, error) { return list(fs, dir, false) }

// ListDirs returns the sorted names of the directories in dir.
func ListDirs(fs vfs.FS, dir string) ([]string, error) { return list(fs, dir, true) }

func list(fs vfs.FS, dir string, dirs bool) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range names {
		fi, err := fs.Stat(fs.PathJoin(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		if fi.IsDir() == dirs {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadFile reads the whole file name of fs.
func ReadFile(fs vfs.FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// WriteFile replaces name with data atomically and durably: it writes a
// temporary file beside it, syncs it, renames it over name and syncs the
// directory. A power cut leaves either the old contents or the new ones.
func WriteFile(fs vfs.FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		fs.Remove(tmp)
		return err
	}
	return SyncDir(fs, fs.PathDir(name))
}

// Exists reports whether name exists on fs.
func Exists(fs vfs.FS, name string) (bool, error) {
	_, err := fs.Stat(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
