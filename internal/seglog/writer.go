package seglog

import (
	"context"
	"fmt"
	"github.com/dmqio/dmq/internal/diskfs"
	"path/filepath"
	"time"

	"github.com/dmqio/dmq/internal/crashpoint"
)

const (
	// flushBytes is how much encoded data the writer buffers before it
	// issues a write syscall in the middle of a large group. A smaller
	// group is written with exactly one write.
	flushBytes = 4 << 20

	// syncJobs is how many written groups may wait for the syncer. When
	// all are in use the writer blocks, and appends queue up into larger
	// groups.
	syncJobs = 4
)

// syncJob hands one written group from the writer to the syncer.
type syncJob struct {
	seg   *segment
	size  int64        // segment size after the group
	next  uint64       // next offset after the group
	index []indexEntry // index entries of the group's records
	reqs  []*request   // requests whose last record is in the group
}

func (j *syncJob) reset() {
	j.seg = nil
	j.index = j.index[:0]
	clear(j.reqs)
	j.reqs = j.reqs[:0]
}

// writer is the state of the writer goroutine, the only code that writes
// to segment files and that rolls segments. It encodes and writes each
// group, then hands it to the syncer goroutine, and goes on writing the
// next group while the syncer fsyncs: writes overlap fsyncs.
type writer struct {
	l      *Log
	active *segment

	buf    []byte // encoded records not yet written; reused
	bufPos int64  // file position of buf[0]
	size   int64  // file position after the last encoded record
	next   uint64 // offset of the next encoded record
	ib     indexBuilder

	job  *syncJob      // group being encoded; nil between groups
	jobs chan *syncJob // written groups, to the syncer
	free chan *syncJob // jobs the syncer is done with; all syncJobs when it is idle

	syncer   syncer
	pre      preallocator // fills the active segment ahead; only with fdatasync (see prealloc.go)
	closeErr error        // result of the final fsync
}

func (w *writer) init(l *Log, active *segment) {
	w.l = l
	w.jobs = make(chan *syncJob, syncJobs)
	w.free = make(chan *syncJob, syncJobs)
	for range syncJobs {
		w.free <- &syncJob{}
	}
	w.syncer = syncer{l: l, jobs: w.jobs, free: w.free, done: make(chan struct{})}
	w.pre.init(l)
	w.setActive(active)
}

// setActive makes s, whose durable extent is published, the segment
// written to.
func (w *writer) setActive(s *segment) {
	w.active = s
	if !w.l.opts.NoSync && hasDatasync(s.f) {
		w.pre.start(s)
	}
	w.size, w.bufPos, w.next = s.size, s.size, s.next
	w.ib = indexBuilder{interval: int64(w.l.opts.IndexIntervalBytes)}
	if n := len(s.index); n > 0 {
		w.ib.lastPos = int64(s.index[n-1].pos)
	}
}

// run is the writer goroutine. It sleeps in queue.take until an appender
// (the first one to find the queue empty) or Close wakes it, commits
// everything queued as one group, and exits once the queue is closed and
// drained, after the syncer has finished.
func (w *writer) run() {
	defer close(w.l.writerDone)
	go w.syncer.run()
	go w.pre.run()
	var batch []*request
	for {
		var closed bool
		batch, closed = w.l.q.take(batch)
		if len(batch) == 0 && closed {
			w.shutdown()
			return
		}
		w.commit(batch)
		clear(batch) // drop references to payloads and recycled requests
		if cap(w.buf) > 2*flushBytes {
			w.buf = nil // do not keep a buffer grown by huge records
		}
	}
}

// commit encodes and writes the requests of one group and hands the
// group to the syncer. A write or roll failure fails the log.
func (w *writer) commit(batch []*request) {
	for _, r := range batch {
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			continue // canceled by its caller
		}
		if r.recover {
			r.complete(0, w.recover())
			continue
		}
		if err := w.l.q.failure(); err != nil {
			r.complete(0, err)
			continue
		}
		if err := w.encode(r); err != nil {
			r.complete(0, w.fail(err))
		}
	}
	if err := w.submit(); err != nil {
		w.fail(err)
	}
}

// current returns the job being filled, taking a free one (and waiting
// for the syncer to release one if needed) at the start of a group.
func (w *writer) current() *syncJob {
	if w.job == nil {
		w.job = <-w.free
		w.job.seg = w.active
	}
	return w.job
}

// encode appends r's records to the buffer, rolling the segment first if
// r does not fit in it (or, for a batch larger than a segment, whenever
// the next record does not fit), and adds r to the group.
func (w *writer) encode(r *request) error {
	segBytes := w.l.opts.SegmentBytes
	if w.size > 0 && w.size+r.bytes > segBytes {
		if err := w.roll(); err != nil {
			return err
		}
	}
	job := w.current()
	r.first = w.next
	for _, p := range r.payloads {
		n := int64(recordSize(len(p)))
		if w.size > 0 && w.size+n > segBytes {
			if err := w.roll(); err != nil {
				return err
			}
			job = w.current()
		}
		if w.ib.want(w.size) {
			job.index = append(job.index, indexEntry{rel: uint32(w.next - w.active.base), pos: uint32(w.size)})
		}
		w.buf = appendRecord(w.buf, w.next, p)
		w.size += n
		w.next++
		if len(w.buf) >= flushBytes {
			if err := w.write(); err != nil {
				return err
			}
		}
	}
	job.reqs = append(job.reqs, r)
	return nil
}

// write writes the buffer to the active segment with one pwrite.
func (w *writer) write() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.pre.beforeWrite(w.active, w.bufPos+int64(len(w.buf)))
	if _, err := w.active.f.WriteAt(w.buf, w.bufPos); err != nil {
		return fmt.Errorf("seglog: write %s: %w", w.active.path, err)
	}
	w.bufPos += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// submit writes what is buffered and hands the group to the syncer.
func (w *writer) submit() error {
	if w.job == nil {
		return nil
	}
	if err := w.write(); err != nil {
		return err
	}
	j := w.job
	w.job = nil
	j.size, j.next = w.size, w.next
	if len(w.free) == syncJobs-1 && w.l.q.empty() {
		// The syncer is idle (every other job is free) and nothing waits
		// to be written: fsync here rather than wake the syncer, which
		// saves a goroutine hand-off on the latency of a lone append.
		// Nothing else can commit meanwhile, so the order holds.
		w.syncer.commit([]*syncJob{j})
		j.reset()
		w.free <- j
		return nil
	}
	w.jobs <- j // never blocks: the channel has room for every job
	return nil
}

// barrier waits until the syncer has finished every submitted job, which
// is when all jobs are back in free. w.job must be nil.
func (w *writer) barrier() {
	var held [syncJobs]*syncJob
	for i := range held {
		held[i] = <-w.free
	}
	for _, j := range held {
		w.free <- j
	}
}

// roll seals the active segment and starts a new one at the next offset:
// it submits the records encoded so far, waits for the syncer to make
// them durable (so that a sealed segment is always complete on disk),
// writes the index file and creates the new segment file.
func (w *writer) roll() error {
	if err := w.submit(); err != nil {
		return err
	}
	w.barrier()
	if err := w.l.q.failure(); err != nil {
		return err
	}
	l, old := w.l, w.active
	// A sealed segment ends with its last record: cut the zeros ahead.
	w.pre.stop()
	if err := l.cutToRecords(old, old.size); err != nil {
		return err
	}
	if l.opts.NoSync {
		if err := l.fsync(old); err != nil {
			return err
		}
	}
	crashpoint.Hit(crashpoint.RollSealed)
	x := &indexFile{base: old.base, next: old.next, size: old.size,
		interval: indexIntervalField(l.opts), entries: old.index}
	if err := writeIndexFile(l.opts.FS, filepath.Join(l.opts.Dir, indexName(old.base)), x); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.RollIndexed)
	path := filepath.Join(l.opts.Dir, segmentName(w.next))
	f, err := createFile(l.opts.FS, path)
	if err != nil {
		return fmt.Errorf("seglog: create segment: %w", err)
	}
	s := newSegment(w.next, path, f)
	s.modTime = time.Now()
	crashpoint.Hit(crashpoint.RollCreated)
	if err := l.syncDir(); err != nil {
		_ = s.release()
		_ = l.opts.FS.Remove(path) // so that a roll after Recover can create it again
		return err
	}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	w.setActive(s)
	return nil
}

// recover brings a failed log back: once the syncer has failed every
// group in flight, it cuts the active segment back to its durable size
// (dropping whatever a failed write or fsync left behind, which was never
// acknowledged and is never trusted), fsyncs it, and clears the failure.
// If the cut or the fsync fails, the log stays failed.
func (w *writer) recover() error {
	if w.l.q.failure() == nil {
		return nil
	}
	if err := w.submit(); err != nil {
		w.fail(err)
	}
	w.barrier()
	w.pre.stop()
	s := w.active
	w.l.mu.RLock()
	size := s.size
	w.l.mu.RUnlock()
	if err := diskfs.Truncate(s.f, size); err != nil {
		return fmt.Errorf("seglog: recover %s: truncate to %d bytes: %w", s.path, size, err)
	}
	if err := w.l.fsync(s); err != nil {
		return fmt.Errorf("seglog: recover: %w", err)
	}
	w.buf = w.buf[:0]
	w.setActive(s)
	w.l.q.failed.Store(nil)
	w.l.logger.Log(context.Background(), w.l.recoverLevel(), "seglog: recovered from a failure; appends resume", "segment", s.path, "durable_bytes", size)
	return nil
}

// fail fails the log and the requests of the group being encoded, and
// returns the sticky error.
func (w *writer) fail(cause error) error {
	err := w.l.fail(cause)
	if j := w.job; j != nil {
		for _, r := range j.reqs {
			r.complete(0, err)
		}
		j.reset()
		w.free <- j
		w.job = nil
	}
	w.buf = w.buf[:0]
	return err
}

// shutdown runs when Close has drained the queue: it lets the syncer
// finish, then fsyncs the active segment (which matters with NoSync). On
// a failed log it instead cuts off, best effort, what was written but
// never acknowledged; whether that survives is unknown after a failed
// fsync anyway.
func (w *writer) shutdown() {
	close(w.jobs)
	<-w.syncer.done
	w.pre.close()
	if w.l.q.failure() != nil {
		_ = diskfs.Truncate(w.active.f, w.active.size)
		return
	}
	if err := w.l.cutToRecords(w.active, w.active.size); err != nil {
		w.closeErr = err
		return
	}
	w.closeErr = w.l.fsync(w.active)
}
