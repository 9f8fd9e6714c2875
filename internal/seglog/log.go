package seglog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dmqio/dmq/internal/crashpoint"
	"github.com/dmqio/dmq/internal/diskfs"
)

// Log is a segmented append-only log. See the package documentation for
// the file format and guarantees. All methods are safe for concurrent use.
type Log struct {
	opts     Options
	logger   *slog.Logger
	recovery Recovery

	// mu guards segs, closed and the mutable fields of every segment.
	// The syncer holds it (write-locked) only to publish durable records,
	// the writer to add a segment, readers (read-locked) to pick a segment
	// and snapshot its durable extent; nobody holds it during I/O.
	mu     sync.RWMutex
	segs   []*segment // oldest first; the last one is the active segment
	closed bool

	next atomic.Uint64 // mirrors the active segment's next, for Next()
	size atomic.Int64  // sum of the segments' durable sizes, for Size()

	q          queue
	w          writer        // owned by the writer goroutine (w.syncer by the syncer)
	writerDone chan struct{} // closed when the writer goroutine exits

	closeOnce sync.Once
	closeErr  error

	syncs atomic.Uint64 // number of data fsyncs; for tests

	// failLoggedAt is when a failure was last logged at error level (unix ns), and
	// failLogged whether the last failure was; see failLevel.
	failLoggedAt atomic.Int64
	failLogged   atomic.Bool
}

// failLogEvery is how often a log that fails and recovers again and again (its disk is
// full, and the replica retries every second) logs a failure at error level, and the
// recovery from it at info level; the repeats in between are logged at debug level.
const failLogEvery = time.Minute

// failLevel is the level of a failure's log line.
func (l *Log) failLevel() slog.Level {
	now := time.Now().UnixNano()
	if now-l.failLoggedAt.Load() < int64(failLogEvery) {
		l.failLogged.Store(false)
		return slog.LevelDebug
	}
	l.failLoggedAt.Store(now)
	l.failLogged.Store(true)
	return slog.LevelError
}

// recoverLevel is the level of the line saying the log recovered: info when its failure
// was logged at error level.
func (l *Log) recoverLevel() slog.Level {
	if l.failLogged.Load() {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// Recovery describes what Open had to repair. The zero value means
// nothing was dropped.
type Recovery struct {
	Segment      string // path of the truncated segment
	TruncatedAt  int64  // byte position it was truncated at
	DroppedBytes int64  // bytes removed from its end
	Reason       string // why the record at TruncatedAt was rejected
	// Preallocated is true when the dropped bytes were all zeros, the space
	// the log fills ahead of its writes (see prealloc.go): no written
	// record was dropped.
	Preallocated bool
}

// SegmentInfo describes one segment.
type SegmentInfo struct {
	Base    uint64    // offset of the first record
	Next    uint64    // one past the last record
	Bytes   int64     // size of the durable records in bytes
	ModTime time.Time // time of the last write (file mtime when opened)
	Path    string
}

// Open opens the log in opts.Dir, creating the directory and an empty
// first segment if needed, and recovers the active segment (see the
// package documentation). It starts the writer and syncer goroutines;
// call Close to stop them. A directory must be used by one Log at a time;
// this is not enforced.
func Open(opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{opts: opts, logger: opts.Logger, writerDone: make(chan struct{})}
	l.q.wake = make(chan struct{}, 1)
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			_ = s.release()
		}
		return nil, err
	}
	active := l.segs[len(l.segs)-1]
	for _, s := range l.segs {
		l.size.Add(s.size)
	}
	l.next.Store(active.next)
	l.w.init(l, active)
	go l.w.run()
	return l, nil
}

// load lists the directory, opens every segment and recovers the active
// one.
func (l *Log) load() error {
	dir, fs := l.opts.Dir, l.opts.FS
	if err := diskfs.MkdirAll(fs, dir); err != nil {
		return fmt.Errorf("seglog: %w", err)
	}
	names, err := diskfs.ListFiles(fs, dir)
	if err != nil {
		return fmt.Errorf("seglog: %w", err)
	}
	var bases, idxs []uint64
	dirty := false // the directory changed and needs an fsync
	for _, name := range names {
		if base, ok := parseName(name, ".log"); ok {
			bases = append(bases, base)
		} else if base, ok := parseName(name, ".idx"); ok {
			idxs = append(idxs, base)
		} else if _, ok := parseName(name, ".idx.tmp"); ok {
			if err := fs.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("seglog: %w", err)
			}
			dirty = true
		}
	}
	slices.Sort(bases)
	for _, base := range idxs {
		if _, found := slices.BinarySearch(bases, base); !found {
			if err := fs.Remove(filepath.Join(dir, indexName(base))); err != nil {
				return fmt.Errorf("seglog: remove orphan index: %w", err)
			}
			dirty = true
		}
	}
	if len(bases) == 0 {
		bases = append(bases, 0)
		f, err := createFile(fs, filepath.Join(dir, segmentName(0)))
		if err != nil {
			return fmt.Errorf("seglog: create segment: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("seglog: create segment: %w", err)
		}
		dirty = true
	}
	for i, base := range bases[:len(bases)-1] {
		s, wrote, err := l.openSealed(base, bases[i+1])
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		dirty = dirty || wrote
	}
	s, err := l.openActive(bases[len(bases)-1])
	if err != nil {
		return err
	}
	l.segs = append(l.segs, s)
	if dirty {
		return l.syncDir()
	}
	return nil
}

// openSealed opens a sealed segment whose successor starts at next. It
// loads the segment's index, or rebuilds it by scanning the segment and
// rewrites it (reporting wrote=true). A sealed segment found corrupt
// while rebuilding is kept as is: reads of the damaged records fail with
// a *CorruptionError.
func (l *Log) openSealed(base, next uint64) (s *segment, wrote bool, err error) {
	path := filepath.Join(l.opts.Dir, segmentName(base))
	f, err := l.opts.FS.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("seglog: open segment: %w", err)
	}
	s = newSegment(base, path, f)
	defer func() {
		if err != nil {
			_ = s.release()
		}
	}()
	size, modTime, err := sizeAndTime(f)
	if err != nil {
		return nil, false, fmt.Errorf("seglog: %w", err)
	}
	if size > maxSegmentFileBytes {
		return nil, false, fmt.Errorf("seglog: segment %s is larger than 4 GiB", path)
	}
	s.next, s.size, s.modTime = next, size, modTime

	idxPath := filepath.Join(l.opts.Dir, indexName(base))
	x, err := readIndexFile(l.opts.FS, idxPath)
	switch {
	case err != nil:
	case x.base != base || x.next != next || x.size != s.size:
		err = fmt.Errorf("index describes offsets [%d, %d) in %d bytes, segment has [%d, %d) in %d bytes",
			x.base, x.next, x.size, base, next, s.size)
	default:
		s.index = x.entries
		return s, false, nil
	}
	l.logger.Info("seglog: rebuilding segment index", "segment", path, "reason", err.Error())

	res, err := scanSegment(f, path, base, s.size, int64(l.opts.IndexIntervalBytes))
	if err != nil {
		return nil, false, err
	}
	s.index = res.index
	switch {
	case res.corrupt != nil:
		l.logger.Warn("seglog: sealed segment is corrupt; its index is partial and reads past the damage will fail",
			"segment", path, "position", res.corrupt.Position, "offset", res.corrupt.Offset, "reason", res.corrupt.Reason)
		return s, false, nil
	case res.next != next:
		l.logger.Warn("seglog: sealed segment does not end where its successor starts",
			"segment", path, "last_offset", int64(res.next)-1, "successor_base", next)
		return s, false, nil
	}
	x = &indexFile{base: base, next: next, size: s.size, interval: indexIntervalField(l.opts), entries: s.index}
	if err := writeIndexFile(l.opts.FS, idxPath, x); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// openActive opens the newest segment for writing, scans it, and
// truncates it at the first torn or invalid record.
func (l *Log) openActive(base uint64) (s *segment, err error) {
	path := filepath.Join(l.opts.Dir, segmentName(base))
	f, err := openReadWrite(l.opts.FS, path)
	if err != nil {
		return nil, fmt.Errorf("seglog: open segment: %w", err)
	}
	s = newSegment(base, path, f)
	defer func() {
		if err != nil {
			_ = s.release()
		}
	}()
	size, modTime, err := sizeAndTime(f)
	if err != nil {
		return nil, fmt.Errorf("seglog: %w", err)
	}
	res, err := scanSegment(f, path, base, size, int64(l.opts.IndexIntervalBytes))
	if err != nil {
		return nil, err
	}
	zeroTail := false
	if res.corrupt != nil {
		if zeroTail, err = allZeros(f, res.end, size); err != nil {
			return nil, fmt.Errorf("seglog: read the tail of %s: %w", path, err)
		}
	}
	s.next, s.size, s.modTime, s.index = res.next, res.end, modTime, res.index
	if res.corrupt == nil {
		return s, nil
	}
	dropped := size - res.end
	if err := diskfs.Truncate(f, res.end); err != nil {
		return nil, fmt.Errorf("seglog: truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("seglog: fsync %s: %w", path, err)
	}
	l.recovery = Recovery{Segment: path, TruncatedAt: res.end, DroppedBytes: dropped, Reason: res.corrupt.Reason, Preallocated: zeroTail}
	if zeroTail {
		// Space preallocated before a crash (see prealloc.go), not damage.
		l.logger.Info("seglog: dropped the zero-filled (preallocated) tail of the active segment",
			"segment", path, "position", res.end, "dropped_bytes", dropped)
		return s, nil
	}
	l.logger.Warn("seglog: truncated torn or corrupt tail of active segment",
		"segment", path, "position", res.end, "dropped_bytes", dropped, "reason", res.corrupt.Reason)
	return s, nil
}

// maxZeroTail bounds the zeros a crash can leave after the records of the
// active segment: what the filler keeps ahead, plus one step.
const maxZeroTail = 3 * MaxPrealloc

// allZeros reports whether f holds only zero bytes in [from, to), which is
// at most maxZeroTail long (a longer tail is not preallocated space).
func allZeros(f vfs.File, from, to int64) (bool, error) {
	if to-from > maxZeroTail {
		return false, nil
	}
	buf := make([]byte, to-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	for _, b := range buf {
		if b != 0 {
			return false, nil
		}
	}
	return true, nil
}

// indexIntervalField is the informative interval stored in index files.
func indexIntervalField(o Options) uint32 {
	return uint32(min(o.IndexIntervalBytes, math.MaxUint32))
}

// Recovery reports what Open had to repair; the zero value if nothing.
func (l *Log) Recovery() Recovery { return l.recovery }

// First returns the oldest offset still stored. It equals Next() when the
// log is empty.
func (l *Log) First() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.segs) == 0 {
		return l.next.Load()
	}
	return l.segs[0].base
}

// Next returns the offset the next appended record will get. Records
// below it are durable and readable (unless deleted).
func (l *Log) Next() uint64 { return l.next.Load() }

// Size returns the total size in bytes of the durable records of all
// segments.
func (l *Log) Size() int64 { return l.size.Load() }

// Segments lists the segments, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	infos := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		infos[i] = s.info()
	}
	return infos
}

// Read returns the payload of the record at offset, read from disk. It
// returns ErrOutOfRange itself (not wrapped) if offset is below First() or
// not below Next(), ErrClosed after Close, and a *CorruptionError if the
// stored record fails its CRC or offset check. The returned slice is the
// caller's.
func (l *Log) Read(offset uint64) ([]byte, error) {
	r, s, err := l.reader(offset)
	if err != nil {
		return nil, err
	}
	defer s.release()
	r.pooled = true
	defer r.done()
	recs, err := r.read(offset, 1, 0)
	if err != nil {
		return nil, err
	}
	return append(make([]byte, 0, len(recs[0])), recs[0]...), nil
}

// ReadBatch returns the payloads of consecutive records starting at
// offset: at most max records and no more than maxBytes payload bytes,
// except that the first record is always returned whole. It stops at the
// end of offset's segment, so it may return fewer records than are
// available; read on from offset+len(result). It reads the whole span with
// one ReadAt when it can. The payloads share one buffer; they are the
// caller's. Errors are as for Read; a damaged record after the first ends
// the batch early without error, and reading its offset reports it.
func (l *Log) ReadBatch(offset uint64, max int, maxBytes int) ([][]byte, error) {
	r, s, err := l.reader(offset)
	if err != nil {
		return nil, err
	}
	defer s.release()
	return r.read(offset, max, maxBytes)
}

// reader snapshots the durable extent of the segment holding offset and
// takes a reference to it; the caller releases it.
func (l *Log) reader(offset uint64) (spanReader, *segment, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return spanReader{}, nil, ErrClosed
	}
	first, next := l.segs[0].base, l.segs[len(l.segs)-1].next
	if offset < first || offset >= next {
		return spanReader{}, nil, ErrOutOfRange
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
	s := l.segs[i]
	rel, pos := lookupIndex(s.index, uint32(min(offset-s.base, math.MaxUint32)))
	s.acquire()
	f, err := s.file(l.opts.FS)
	if err != nil {
		s.release()
		return spanReader{}, nil, err
	}
	return spanReader{span: span{
		f: f, path: s.path, base: s.base, next: s.next, end: s.size,
		startRel: rel, startPos: pos,
	}}, s, nil
}

// CloseIdleFiles closes the files of sealed segments nobody read for idle;
// the next read reopens them. It returns how many it closed. The broker
// calls it periodically so that open files stay bounded however many
// segments a topic keeps.
func (l *Log) CloseIdleFiles(idle time.Duration) int {
	l.mu.RLock()
	if l.closed || len(l.segs) < 2 {
		l.mu.RUnlock()
		return 0
	}
	sealed := slices.Clone(l.segs[:len(l.segs)-1])
	l.mu.RUnlock()
	cutoff, n := time.Now().Add(-idle).UnixNano(), 0
	for _, s := range sealed {
		if s.closeIfIdle(cutoff) {
			n++
		}
	}
	return n
}

// DeleteSegmentsBefore removes the oldest sealed segments whose every
// record has an offset below offset, and returns how many it removed. It
// never removes the active segment or a segment holding an offset at or
// above offset, and it removes only a prefix of the log, so offsets stay
// dense. First() moves to the base of the oldest remaining segment.
// Readers already reading a removed segment finish normally.
func (l *Log) DeleteSegmentsBefore(offset uint64) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	if n == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	victims := slices.Clone(l.segs[:n])
	l.segs = slices.Clone(l.segs[n:])
	for _, s := range victims {
		l.size.Add(-s.size)
	}
	l.mu.Unlock()

	// Oldest first, so that a crash leaves a contiguous log behind.
	var errs []error
	for _, s := range victims {
		if err := l.opts.FS.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		crashpoint.Hit(crashpoint.RetentionRemoved)
		idx := strings.TrimSuffix(s.path, ".log") + ".idx"
		if err := l.opts.FS.Remove(idx); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if err := s.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.syncDir(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("seglog: delete segments: %w", err)
	}
	return n, nil
}

// Close waits for every queued append to complete, fsyncs the active
// segment and closes the files. Later appends fail with ErrClosed, as do
// reads. Close is safe to call more than once and concurrently; every
// call returns the result of the first, which reports failures of the
// final fsync or of closing files (not an earlier failure of the log,
// which its appends already reported).
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.q.close()
		<-l.writerDone
		errs := []error{l.w.closeErr}
		l.mu.Lock()
		segs := l.segs
		l.segs, l.closed = nil, true
		l.mu.Unlock()
		for _, s := range segs {
			if err := s.release(); err != nil {
				errs = append(errs, fmt.Errorf("seglog: close %s: %w", s.path, err))
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// syncDir fsyncs the log's directory so that file creations, renames and
// removals in it are durable.
func (l *Log) syncDir() error {
	if err := diskfs.SyncDir(l.opts.FS, l.opts.Dir); err != nil {
		return fmt.Errorf("seglog: fsync directory %s: %w", l.opts.Dir, err)
	}
	return nil
}

// sizeAndTime returns a file's size and modification time.
func sizeAndTime(f vfs.File) (int64, time.Time, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, time.Time{}, err
	}
	return fi.Size(), fi.ModTime(), nil
}
