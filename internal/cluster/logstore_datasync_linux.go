package cluster

import "golang.org/x/sys/unix"

// datasync is fdatasync(2) on f if it has a descriptor: the data and the metadata needed
// to read it back (size, blocks), not the file's times. Otherwise it is f.Sync.
func datasync(f interface{ Sync() error }) error {
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
