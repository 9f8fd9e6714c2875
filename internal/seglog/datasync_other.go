//go:build !linux

package seglog

// Datasync is Sync where fdatasync(2) is not available.
func (f osFile) Datasync() error { return f.Sync() }

// Datasync is f.Sync where fdatasync(2) is not available.
func Datasync(f interface{ Sync() error }) error { return f.Sync() }
