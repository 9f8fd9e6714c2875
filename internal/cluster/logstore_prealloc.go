package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft-wal/types"

	"github.com/dmqio/dmq/internal/seglog"
)

// Zeros ahead of the Raft log's writer, as package seglog keeps them ahead of a topic
// log's (internal/seglog/prealloc.go has the measurements). walVFS preallocates each
// segment file to its size limit, keeping the file's size: unwritten extents, so the
// fsync after each append batch must also commit to the file system's journal the
// extents it turned into written ones and the file's new size. A filler goroutine writes
// real zeros (and syncs them) ahead of the writer, so that the commits overwrite blocks
// that exist on disk already, within the file's size, and the commits use fdatasync:
// fsync would commit the file's times to the journal again. The filler runs only when
// the zeros ahead run short, so an idle log has no goroutine.
//
// The zeros change nothing raft-wal reads: a zero frame header, as the file's end, is
// where raft-wal finds a segment's end. Only segments created by
// this process are filled (a tail reopened after a restart is not: where its records
// end is raft-wal's to know), and only while the log is written slowly: a busy log
// commits large batches, where a journal commit per batch costs little per entry and
// writing every byte twice costs disk bandwidth and CPU.
//
// The filler's bounds and its rate limit are seglog's (MinPrealloc, MaxPrealloc,
// PreallocMaxRate), measured there.

// logZeros is the source of the filler's writes; never written to.
var logZeros = make([]byte, seglog.MaxPrealloc)

// preallocVFS hands out new segment files kept zero-filled ahead of their writer.
type preallocVFS struct{ types.VFS }

func (v preallocVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil || size == 0 {
		return f, err
	}
	return newZeroedFile(f, int64(size)), nil
}

// zeroedFile is a segment file with a filler goroutine.
type zeroedFile struct {
	types.WritableFile
	limit int64 // the file's size limit: nothing is filled past it

	mu      sync.Mutex
	cond    *sync.Cond // signaled when a fill step ends
	filled  int64      // zeros or records are durable up to here
	claimed int64      // the filler is writing zeros in [filled, claimed)
	written int64      // the writer's writes reach up to here
	filling bool       // the filler goroutine runs
	stopped bool       // a fill failed, or the file is closing
	rate    seglog.WriteRate
	lead    int64 // how far ahead to fill, from the rate
}

func newZeroedFile(f types.WritableFile, limit int64) *zeroedFile {
	z := &zeroedFile{WritableFile: f, limit: limit}
	z.cond = sync.NewCond(&z.mu)
	return z
}

// WriteAt waits while the filler writes zeros where p goes, and wakes the filler when
// the zeros ahead run short.
func (z *zeroedFile) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	z.mu.Lock()
	for z.claimed > z.filled && end > z.filled {
		z.cond.Wait()
	}
	rate := z.rate.Add(max(end-z.written, 0), time.Now())
	z.written = max(z.written, end)
	z.lead = min(max(rate, seglog.MinPrealloc), seglog.MaxPrealloc)
	start := rate < seglog.PreallocMaxRate && !z.stopped && !z.filling && z.filled-z.written < z.lead && z.filled < z.limit
	z.filling = z.filling || start
	z.mu.Unlock()
	if start {
		go z.fill()
	}
	return z.WritableFile.WriteAt(p, off)
}

// fill is the filler goroutine: it writes and syncs chunks of zeros ahead of the
// writer until they are far enough ahead, and ends (a file written fast, idle or full
// has none).
func (z *zeroedFile) fill() {
	for {
		z.mu.Lock()
		from := max(z.filled, z.written)
		if z.stopped || from >= z.limit || from-z.written >= z.lead {
			z.filling = false
			z.cond.Broadcast()
			z.mu.Unlock()
			return
		}
		to := min(from+z.lead, z.limit)
		z.filled, z.claimed = from, to
		z.mu.Unlock()

		_, err := z.WritableFile.WriteAt(logZeros[:to-from], from)
		if err == nil {
			err = syncData(z.WritableFile)
		}

		z.mu.Lock()
		if err != nil {
			// Only speed is lost: the writer's own writes and syncs go on as without it.
			z.stopped, z.claimed = true, z.filled
		} else {
			z.filled = to
		}
		z.cond.Broadcast()
		z.mu.Unlock()
	}
}

// Sync makes what was written durable, with fdatasync.
func (z *zeroedFile) Sync() error {
	return syncData(z.WritableFile)
}

// Close stops the filler, after the chunk it writes, and closes the file.
func (z *zeroedFile) Close() error {
	z.mu.Lock()
	z.stopped = true
	for z.filling {
		z.cond.Wait()
	}
	z.mu.Unlock()
	return z.WritableFile.Close()
}
