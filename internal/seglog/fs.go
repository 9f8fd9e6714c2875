package seglog

import (
	"errors"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fileMode is the permission of the files a log creates, less the umask.
const fileMode = 0o644

// createFile creates the file name on fs for reading and writing, or fails
// with EEXIST if it exists. The log owns its directory (one process, one
// writer goroutine), so nothing creates the file between the check and the
// creation.
func createFile(fs vfs.FS, name string) (vfs.File, error) {
	if _, err := fs.Stat(name); err == nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EEXIST}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return replaceFile(fs, name)
}

// replaceFile creates the file name on fs, replacing any file there.
func replaceFile(fs vfs.FS, name string) (vfs.File, error) {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	if err := restrictMode(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// restrictMode narrows the permissions of a file vfs.FS.Create just made
// (0666 less the umask on vfs.Default) to fileMode less the umask, where the
// file has permissions (an *os.File). With the usual umask 022 both are 0644
// and nothing changes.
func restrictMode(f vfs.File) error {
	c, ok := f.(interface{ Chmod(os.FileMode) error })
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&^fileMode != 0 {
		return c.Chmod(perm & fileMode)
	}
	return nil
}

// openReadWrite opens the existing file name on fs for reading and writing
// (vfs.FS.OpenReadWrite would create a missing one).
func openReadWrite(fs vfs.FS, name string) (vfs.File, error) {
	if _, err := fs.Stat(name); err != nil {
		return nil, err
	}
	return fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
}
