// Package dirlock takes an exclusive advisory lock on a data directory, so that two
// processes never write the same files. The kernel drops the lock when the process dies,
// so a killed server never leaves a stale lock.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Lock is a held lock on a directory.
type Lock struct{ f *os.File }

// Acquire locks dir (its LOCK file, which records the holder's pid) or explains who
// holds it. On a file system other than the OS's (an in-memory one in tests) no other
// process can see the files: it returns a nil Lock, which Release accepts.
func Acquire(fs vfs.FS, dir string) (*Lock, error) {
	if fs != vfs.Default {
		return nil, nil
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another dmq server (pid %s holds %s)", dir, string(holder), path)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return &Lock{f: f}, nil
}

// Release unlocks; a nil lock is fine.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}
