package seglog

import (
	"fmt"
	"github.com/dmqio/dmq/internal/diskfs"
	"sync"
	"time"
)

// Preallocation. On ext4 (and most file systems) an fsync after an append
// that grows the file must commit the new size and block allocation to the
// journal; an fdatasync after overwriting blocks that already exist on disk
// flushes only the data. On this project's machines the second costs about
// two thirds of the first (0.14 against 0.21 ms per commit) and less CPU.
// So a filler goroutine keeps the active segment zero-filled — really
// written and synced, not fallocated, whose unwritten extents would again
// need a journal commit when first written — ahead of the writer,
// and group commits use fdatasync.
//
// The zeros are never data: the logical end of a segment is where its
// records end. A segment is cut back to its records when it is sealed and
// when the log is closed; after a crash, Open finds the end of the records
// and drops an all-zero tail as preallocated space, reported as such and
// not as damage (Recovery.Preallocated, see openActive). Only the active
// segment is filled, and only while it is written to, so an idle topic
// costs no disk beyond its records. A full disk stops the filling of the
// segment (writes then fail as they would without it); the next segment,
// or a Recover, tries again. Files without fdatasync (the test file
// systems of package faultfs) are not preallocated.
const (
	// The filler keeps about one second of writes ahead (at the rate the
	// log is written), at least MinPrealloc and at most MaxPrealloc, and
	// writes that much per step: a topic written a trickle reserves 64 KiB,
	// a busier one 512 KiB. Larger steps stall the writer's commits behind
	// the filler's sync for longer: with 4 MiB steps W3's paced p99 was
	// 4.6-5.0 ms, with 512 KiB 3.5 ms (two alternating runs each).
	MinPrealloc = 64 << 10
	MaxPrealloc = 512 << 10

	// PreallocMaxRate: the filler runs only while the log is written more
	// slowly than this. A busy log commits large groups, where a journal
	// commit per group costs little per record and writing every byte twice
	// (zeros first) costs disk bandwidth and CPU: W1 (170 MB/s) ran 20-25%
	// slower with the filler on. A lightly loaded log commits small groups,
	// where each commit's latency counts: W2 and W3's paced latency
	// (1-5 MB/s) gained 20-35%.
	PreallocMaxRate = 16 << 20 // bytes per second
	rateWindow      = 100 * time.Millisecond
)

// zeroChunk is the source of the filler's writes; never written to.
var zeroChunk = make([]byte, MaxPrealloc)

// preallocator is the filler goroutine's state, shared with the writer.
type preallocator struct {
	l    *Log
	mu   sync.Mutex
	cond *sync.Cond // signaled when a fill step ends

	seg     *segment // segment being filled; nil while stopped
	filled  int64    // seg's file holds durable zeros or records up to here
	claimed int64    // the filler is writing zeros in [filled, claimed)
	written int64    // the writer's writes reach up to here
	failed  bool     // a fill failed: preallocation is off for this segment
	rate    WriteRate
	lead    int64 // how far ahead to fill, from the rate

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func (p *preallocator) init(l *Log) {
	p.l = l
	p.cond = sync.NewCond(&p.mu)
	p.wake = make(chan struct{}, 1)
	p.quit = make(chan struct{})
	p.done = make(chan struct{})
}

// start makes s, whose file ends where its records end, the segment to
// fill. Filling begins with the first write.
func (p *preallocator) start(s *segment) {
	p.mu.Lock()
	p.seg, p.filled, p.claimed, p.written = s, s.size, s.size, s.size
	p.failed = false // a disk that was full may have room again
	p.mu.Unlock()
}

// stop waits for a fill step in progress and stops filling; the caller may
// then cut the segment's file back to its records.
func (p *preallocator) stop() {
	p.mu.Lock()
	for p.claimed > p.filled {
		p.cond.Wait()
	}
	p.seg = nil
	p.mu.Unlock()
}

// beforeWrite is called by the writer before it writes s up to end. It
// waits if the filler is writing zeros where the write goes, and wakes the
// filler when the zeros ahead run short.
func (p *preallocator) beforeWrite(s *segment, end int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s != p.seg {
		return
	}
	for p.claimed > p.filled && end > p.filled {
		p.cond.Wait()
	}
	rate := p.rate.Add(end-p.written, time.Now())
	p.written = max(p.written, end)
	p.lead = min(max(rate, MinPrealloc), MaxPrealloc)
	if rate < p.l.opts.preallocMaxRate && !p.failed && p.filled-p.written < p.lead && p.filled < p.l.opts.SegmentBytes {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// run is the filler goroutine; it ends when quit is closed.
func (p *preallocator) run() {
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case <-p.wake:
		}
		for p.step() {
		}
	}
}

// step writes and syncs one chunk of zeros ahead of the writer, if one is
// wanted; it reports whether another may be.
func (p *preallocator) step() bool {
	p.mu.Lock()
	s, limit := p.seg, p.l.opts.SegmentBytes
	from := max(p.filled, p.written)
	if s == nil || p.failed || from >= limit || from-p.written >= p.lead {
		p.mu.Unlock()
		return false
	}
	to := min(from+p.lead, limit)
	p.filled, p.claimed = from, to
	p.mu.Unlock()

	err := p.fill(s, from, to)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		// Only speed is lost: the writer's own writes grow the file.
		p.failed, p.claimed = true, p.filled
		p.l.logger.Warn("seglog: preallocating segment space failed; appends go on without it", "err", err)
	} else {
		p.filled = to
	}
	p.cond.Broadcast()
	return err == nil && p.seg == s
}

// fill writes zeros over [from, to) of s's file and syncs them.
func (p *preallocator) fill(s *segment, from, to int64) error {
	if _, err := s.f.WriteAt(zeroChunk[:to-from], from); err != nil {
		return fmt.Errorf("write zeros to %s: %w", s.path, err)
	}
	if err := p.l.opts.fsync(s.f); err != nil {
		return fmt.Errorf("sync zeros of %s: %w", s.path, err)
	}
	return nil
}

// WriteRate estimates how fast the log is written, over windows of
// rateWindow.
type WriteRate struct {
	start     time.Time
	bytes     int64 // written since start
	lastBytes int64 // written in the window before, scaled to one window
}

// Add counts n bytes written at now and returns the rate in bytes per
// second: the larger of the last full window's and the current one's.
func (r *WriteRate) Add(n int64, now time.Time) int64 {
	if elapsed := now.Sub(r.start); elapsed >= 2*rateWindow {
		r.lastBytes = 0 // the window just before now had no write
		r.start, r.bytes = now, 0
	} else if elapsed >= rateWindow {
		r.lastBytes = r.bytes * int64(rateWindow) / int64(elapsed)
		r.start, r.bytes = now, 0
	}
	r.bytes += n
	return max(r.bytes, r.lastBytes) * int64(time.Second/rateWindow)
}

// close stops the filler goroutine.
func (p *preallocator) close() {
	p.stop()
	close(p.quit)
	<-p.done
}

// cutToRecords truncates s's file to the end of its records if zeros (or
// a failed write) lie beyond, and syncs the cut.
func (l *Log) cutToRecords(s *segment, size int64) error {
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("seglog: %w", err)
	}
	if fi.Size() == size {
		return nil
	}
	if err := diskfs.Truncate(s.f, size); err != nil {
		return fmt.Errorf("seglog: truncate %s to its %d bytes of records: %w", s.path, size, err)
	}
	if err := l.opts.fsync(s.f); err != nil {
		return fmt.Errorf("seglog: fsync %s: %w", s.path, err)
	}
	return nil
}
