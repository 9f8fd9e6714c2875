//go:build !linux

package seglog

// Datasync is Sync where fdatasync(2) is not available.
func (f osFile) Datasync() error { return f.Sync() }
