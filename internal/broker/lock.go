package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// dirLock is an exclusive advisory lock on the data directory, so that two
// brokers never write the same files. The kernel drops it when the process
// dies, so a killed broker never leaves a stale lock.
type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
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
	return &dirLock{f: f}, nil
}

// release unlocks; a nil lock (a broker on a virtual file system) is fine.
func (l *dirLock) release() {
	if l == nil {
		return
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// isNoSpace reports whether err is a full-disk error.
func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
