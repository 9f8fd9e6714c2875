package seglog

import (
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// datasync is fdatasync(2) on f's descriptor: it flushes the file's data and
// the metadata needed to read it back (its size, its blocks), but not its
// times. A file without a descriptor (faultfs) is synced with f.Sync.
func datasync(f vfs.File) error {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return f.Sync()
	}
	for {
		err := unix.Fdatasync(int(fd))
		if err != unix.EINTR {
			return err
		}
	}
}
