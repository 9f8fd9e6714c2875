//go:build !linux

package cluster

// datasync is f.Sync where fdatasync(2) is not available.
func datasync(f interface{ Sync() error }) error { return f.Sync() }
