//go:build !linux

package seglog

import "github.com/cockroachdb/pebble/v2/vfs"

// datasync is f.Sync where fdatasync(2) is not available.
func datasync(f vfs.File) error { return f.Sync() }
