// Package seglog implements a durable, segmented, append-only log of
// opaque records with group commit.
//
// Records are numbered by a dense uint64 offset that starts at 0 for an
// empty log and grows by one per record. The log is split into segment
// files; only the newest (the "active" segment) is ever written, the
// older ones are sealed and immutable until they are deleted as a whole
// by DeleteSegmentsBefore.
//
// # Files
//
// All files live in Options.Dir (created if missing):
//
//	%020d.log      segment; the number is the offset of its first record
//	%020d.idx      sparse index of a sealed segment (same number)
//	%020d.idx.tmp  index being written; removed on Open
//
// Other files in the directory are ignored. An .idx file without a
// matching .log file is removed on Open.
//
// # Record framing
//
// A segment is a plain concatenation of records, with no file header.
// Every integer is little-endian:
//
//	[0:4)    payload length n (uint32)
//	[4:8)    CRC-32C (Castagnoli) over bytes [8:16+n), i.e. offset ++ payload
//	[8:16)   offset of the record (uint64)
//	[16:16+n) payload
//
// The CRC covers the offset, so a record that is valid in itself but sits
// in the wrong place (wrong file, wrong position) is detected by the
// offset check as well as a damaged one by the CRC. Payloads larger than
// Options.MaxRecordBytes are refused by Append with ErrRecordTooLarge.
// Empty payloads are allowed. A header of 16 zero bytes is never a valid
// record (the CRC of eight zero bytes is not zero), which is how a
// zero-filled tail is recognised.
//
// # Sparse index
//
// Each segment has a sparse index of (relative offset uint32, file
// position uint32) pairs: an entry is added for the first record that
// starts at least Options.IndexIntervalBytes after the previous entry
// (position 0 of relative offset 0 is implicit). Lookups binary-search the
// index and scan forward at most about one interval. Only these entries
// are kept in memory, never payloads. The active segment's index lives in
// memory only; when the segment is rolled (sealed) its index is written to
// %020d.idx and fsynced before the next segment is created:
//
//	[0:8)    magic "DMQSIDX1"
//	[8:16)   base offset of the segment (uint64)
//	[16:24)  next offset: one past the segment's last record (uint64)
//	[24:32)  segment size in bytes covered by the index (uint64)
//	[32:36)  entry count c (uint32)
//	[36:40)  index interval in bytes used when writing (uint32, informative)
//	[40:40+8c) entries: relative offset (uint32), file position (uint32)
//	[40+8c:44+8c) CRC-32C over all preceding bytes of the file
//
// An index is used on Open only if its CRC is correct and its base, next
// offset and size agree with the segment file and its successor; otherwise
// it is rebuilt by scanning the segment and rewritten.
//
// Segment files never exceed 4 GiB (file positions in the index are
// 32-bit): SegmentBytes is limited to 2 GiB and MaxRecordBytes to 256 MiB.
//
// # Writing and group commit
//
// Append and AppendAsync queue their batch and wake a single writer
// goroutine. The writer takes everything queued (one group), assigns
// offsets in queue order, encodes all records into one reused buffer and
// writes it with one write (pwrite) syscall, or one per 4 MiB for very
// large groups. It then hands the group to a syncer goroutine and goes on
// with the next group while the syncer works, so that writes overlap
// fsyncs. The syncer takes every group written so far, calls fsync once
// for all of them, publishes their records to readers and then wakes all
// their callers. A caller therefore learns of success only after its
// records are durable, and readers never see a record before it is
// durable. At most four written groups wait for the syncer; beyond
// that the writer waits, and appends queue up into larger groups. With
// Options.NoSync the fsync is skipped (the write still happens before
// Append returns); rolls and Close still fsync.
//
// The records of one Append call get consecutive offsets and are kept in
// one segment: if the batch does not fit in the rest of the active segment
// the segment is rolled first. Only a single batch larger than
// SegmentBytes is split, at record boundaries, across several fresh
// segments. A roll waits until everything written to the old segment is
// fsynced, writes its index, creates the new segment file and fsyncs the
// directory. A batch is not atomic with respect to crashes: if the
// process or machine dies before Append returns, any prefix of the batch
// may survive.
//
// If a write, fsync or roll fails, every caller of the affected groups
// gets the error, and the log becomes failed: every later append fails
// with an error matching ErrFailed, because after a failed fsync the state
// of the page cache is unknown. The log must then be closed and reopened,
// which runs recovery. A failed append may or may not be present after
// reopen.
//
// # Recovery
//
// Open scans the active segment from its start, record by record. At the
// first record that is torn (the file ends inside it), has an absurd
// length (over the 256 MiB hard limit; MaxRecordBytes is not used here, so
// lowering it never makes older records look corrupt), a CRC mismatch or
// an unexpected offset, or at a zero-filled header, the file is truncated
// at that record's position and fsynced: every intact record before it is
// kept, everything from there on is dropped, reported by Log.Recovery and
// logged at Warn level. An empty active segment is fine. Sealed segments
// are not scanned when their index is valid; corruption inside them
// surfaces as a *CorruptionError (matching ErrCorrupt) from Read or
// ReadBatch, which never return data whose CRC or offset does not match.
// A sealed segment whose index must be rebuilt and which turns out to be
// damaged is logged and kept as it is, never truncated. The directory is
// fsynced after segment files are created or deleted.
//
// A directory must be used by one Log at a time; this is not enforced.
//
// # Concurrency
//
// All methods are safe for concurrent use. Reads run concurrently with
// each other and with the writer. The log's lock is held only briefly:
// by the syncer to publish records after their fsync, by the writer to add
// a segment, and by readers to pick a segment and snapshot its durable
// extent; never during I/O.
package seglog
