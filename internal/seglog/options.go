package seglog

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults and limits of Options.
const (
	DefaultSegmentBytes       = 64 << 20
	DefaultMaxRecordBytes     = 8 << 20
	DefaultIndexIntervalBytes = 4096

	// MaxSegmentBytes is the largest allowed Options.SegmentBytes.
	MaxSegmentBytes = 2 << 30
	// MaxRecordBytesLimit is the largest allowed Options.MaxRecordBytes.
	MaxRecordBytesLimit = maxRecordLimit
)

// Options configures a Log. The zero value of every field but Dir selects
// its default.
type Options struct {
	// Dir is the directory holding the segment files; created if missing.
	Dir string

	// SegmentBytes is the size after which the active segment is sealed
	// and a new one started; default 64 MiB, at most MaxSegmentBytes. A
	// segment exceeds it only when a single record is larger.
	SegmentBytes int64

	// NoSync skips the fsync of each group commit: Append returns once the
	// records are written to the OS, which survives a process crash but
	// not a machine crash. Close still fsyncs.
	NoSync bool

	// MaxRecordBytes is the largest payload Append accepts; default 8 MiB,
	// at most MaxRecordBytesLimit.
	MaxRecordBytes int

	// IndexIntervalBytes is the spacing of sparse index entries in bytes
	// of log; default 4096. Smaller is faster to read and uses more memory.
	IndexIntervalBytes int

	// Logger receives recovery warnings and write failures; nil discards.
	Logger *slog.Logger

	// FS is the file system of the log; nil means vfs.Default, the
	// operating system's. Its files must be diskfs.Truncaters (those of
	// vfs.Default and faultfs are).
	FS vfs.FS

	// fsync makes the written data of a segment durable: syncData unless a
	// test replaces it.
	fsync func(vfs.File) error

	// preallocMaxRate replaces PreallocMaxRate in tests.
	preallocMaxRate int64
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("seglog: Options.Dir is empty")
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentBytes < 0 || o.SegmentBytes > MaxSegmentBytes {
		return o, fmt.Errorf("seglog: Options.SegmentBytes %d not in [1, %d]", o.SegmentBytes, MaxSegmentBytes)
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.MaxRecordBytes < 0 || o.MaxRecordBytes > MaxRecordBytesLimit {
		return o, fmt.Errorf("seglog: Options.MaxRecordBytes %d not in [1, %d]", o.MaxRecordBytes, MaxRecordBytesLimit)
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.IndexIntervalBytes < 0 {
		return o, fmt.Errorf("seglog: Options.IndexIntervalBytes %d is negative", o.IndexIntervalBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.fsync == nil {
		o.fsync = syncData
	}
	if o.preallocMaxRate == 0 {
		o.preallocMaxRate = PreallocMaxRate
	}
	return o, nil
}

// syncData flushes a segment's data and what is needed to read it back,
// with fdatasync where the file has a descriptor on Linux (vfs.Default's
// files), else Sync. A segment's modification time may then lag after a
// crash (by the file system's journal interval, seconds): the log uses it
// only to decide which segments to read when the broker rebuilds its
// duplicate window.
func syncData(f vfs.File) error { return datasync(f) }

// hasDatasync says whether f has a descriptor, and so fdatasync where the OS
// offers it, without which preallocation saves nothing (an fsync commits the
// file's times to the journal anyway).
func hasDatasync(f vfs.File) bool { return f.Fd() != vfs.InvalidFd }
