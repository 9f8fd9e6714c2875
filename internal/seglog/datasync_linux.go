package seglog

import "golang.org/x/sys/unix"

// Datasync flushes the file's data and the metadata needed to read it back
// (its size, its blocks), but not its times: fdatasync(2).
func (f osFile) Datasync() error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
