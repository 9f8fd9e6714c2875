package seglog

import "golang.org/x/sys/unix"

// Datasync flushes the file's data and the metadata needed to read it back
// (its size, its blocks), but not its times: fdatasync(2).
func (f osFile) Datasync() error { return Datasync(f.File) }

// Datasync is fdatasync(2) on f if it has a descriptor (an *os.File, or a type
// that embeds one, as raft-wal's segment files do), f.Sync otherwise.
func Datasync(f interface{ Sync() error }) error {
	d, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return f.Sync()
	}
	for {
		err := unix.Fdatasync(int(d.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
