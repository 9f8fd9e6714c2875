package replica

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A replica that cannot write stops applying where it is (stall.go); the leader keeps it
// from getting there by refusing new publishes while the disk's free space is below a
// reserve. The reserve leaves room for what must still be written when publishes stop:
// the Raft log's next segment (created at its full size), acknowledgements and other
// metadata, and the entries already in flight.

// spaceCheckEvery bounds how often the free space is read (one statfs call).
const spaceCheckEvery = 250 * time.Millisecond

// diskSpace reads the free space of the file system holding a directory, at most every
// spaceCheckEvery.
type diskSpace struct {
	fs      vfs.FS
	dir     string
	reserve int64 // bytes; 0 until the first reading when automatic
	auto    bool
	segment int64 // a log segment's size, for the automatic reserve

	mu struct {
		sync.Mutex
		at          time.Time
		free, total int64
		err         error
	}
}

func newDiskSpace(fs vfs.FS, dir string, reserve, segment int64) *diskSpace {
	return &diskSpace{fs: fs, dir: dir, reserve: reserve, auto: reserve == 0, segment: segment}
}

// AutoReserve is the reserve kept free when none is configured: two log segments, or
// 1% of the file system's size up to 1 GiB if that is more.
func AutoReserve(total, segment int64) int64 {
	return max(2*segment, min(total/100, 1<<30))
}

// read returns the free and total bytes, read again if the last reading is old.
func (d *diskSpace) read() (free, total int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := time.Now(); now.Sub(d.mu.at) >= spaceCheckEvery {
		u, err := d.fs.GetDiskUsage(d.dir)
		d.mu.err = err
		d.mu.free, d.mu.total = int64(u.AvailBytes), int64(u.TotalBytes)
		d.mu.at = now
	}
	return d.mu.free, d.mu.total, d.mu.err
}

// Reserve is the free space below which publishes are refused.
func (d *diskSpace) Reserve() int64 {
	_, total, _ := d.read()
	return d.reserveOf(total)
}

// reserveOf is the reserve on a file system of total bytes.
func (d *diskSpace) reserveOf(total int64) int64 {
	if !d.auto {
		return d.reserve
	}
	return AutoReserve(total, d.segment)
}

// check returns an error matching syscall.ENOSPC while the free space is below the
// reserve (nil if it cannot be read: the writes will tell).
func (d *diskSpace) check() error {
	free, total, err := d.read()
	if err != nil {
		return nil
	}
	if reserve := d.reserveOf(total); free < reserve {
		return fmt.Errorf("%w: %s has %d MiB free, below the %d MiB kept in reserve for the logs and metadata",
			syscall.ENOSPC, d.dir, free>>20, reserve>>20)
	}
	return nil
}
