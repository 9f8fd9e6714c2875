package seglog

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// maxSegmentFileBytes is the largest a segment may grow: index positions
// are 32-bit.
const maxSegmentFileBytes = math.MaxUint32

// segment is one segment file and its sparse index.
//
// Lifetime: refs starts at 1, the Log's own reference. Readers take a
// reference (under Log.mu, read-locked) for the duration of their I/O so
// that DeleteSegmentsBefore and Close can drop the segment from the log
// without closing the file under a reader's feet; the last release closes
// the file.
//
// A sealed segment nobody read for a while closes its file
// (Log.CloseIdleFiles) and reopens it on the next read, so open files do
// not grow with the number of segments a topic keeps.
type segment struct {
	base uint64
	path string
	refs atomic.Int32
	// fmu guards f: nil while a sealed segment's file is closed for being
	// idle. The writer and syncer use the active segment's f, which is
	// never closed that way, without it.
	fmu     sync.Mutex
	f       vfs.File
	lastUse atomic.Int64 // Unix ns of the last read

	// The fields below are guarded by Log.mu. Only the writer goroutine
	// changes them after Open, and only for the active segment, so the
	// writer may read them without the lock.
	next    uint64       // one past the last durable record
	size    int64        // bytes of durable records
	modTime time.Time    // time of the last durable write
	index   []indexEntry // sparse index of the durable records
}

func newSegment(base uint64, path string, f vfs.File) *segment {
	s := &segment{base: base, path: path, f: f, next: base}
	s.refs.Store(1)
	return s
}

// acquire takes a reference; the caller must hold Log.mu (at least
// read-locked) and the segment must still be in the log.
func (s *segment) acquire() { s.refs.Add(1) }

// release drops a reference and closes the file with the last one.
func (s *segment) release() error {
	if s.refs.Add(-1) != 0 {
		return nil
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// file returns the open file for a reader holding a reference, reopening
// it if it was closed for being idle.
func (s *segment) file(fs vfs.FS) (vfs.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.f == nil {
		f, err := fs.Open(s.path)
		if err != nil {
			return nil, fmt.Errorf("seglog: reopen segment: %w", err)
		}
		s.f = f
	}
	s.lastUse.Store(time.Now().UnixNano())
	return s.f, nil
}

// closeIfIdle closes the file of a sealed segment that only the log
// references and nobody read since cutoff (Unix ns).
func (s *segment) closeIfIdle(cutoff int64) bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.f == nil || s.refs.Load() != 1 || s.lastUse.Load() >= cutoff {
		return false
	}
	s.f.Close()
	s.f = nil
	return true
}

// info describes the segment; the caller holds Log.mu.
func (s *segment) info() SegmentInfo {
	return SegmentInfo{Base: s.base, Next: s.next, Bytes: s.size, ModTime: s.modTime, Path: s.path}
}

// segmentName and indexName give the file names for a segment base.
func segmentName(base uint64) string { return fmt.Sprintf("%020d.log", base) }
func indexName(base uint64) string   { return fmt.Sprintf("%020d.idx", base) }

// parseName parses a "%020d"+ext file name.
func parseName(name, ext string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ext)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil
}

// scanResult is what scanning a segment from position 0 found.
type scanResult struct {
	next    uint64           // one past the last valid record
	end     int64            // byte position after the last valid record
	index   []indexEntry     // sparse index of the valid records
	corrupt *CorruptionError // the first invalid record; nil if valid up to size
}

// scanSegment reads the first size bytes of a segment sequentially,
// validating every record (length, offset, CRC) and building its sparse
// index, up to the end or the first invalid record. I/O errors are
// returned as err; invalid data is reported in scanResult.corrupt.
func scanSegment(f vfs.File, path string, base uint64, size int64, interval int64) (scanResult, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	res := scanResult{next: base}
	ib := indexBuilder{interval: interval}
	var (
		hdr     [headerSize]byte
		payload []byte
	)
	for res.end < size {
		corrupt := func(reason string) (scanResult, error) {
			res.corrupt = &CorruptionError{Path: path, Position: res.end, Offset: res.next, Reason: reason}
			return res, nil
		}
		avail := size - res.end
		if avail < headerSize {
			return corrupt(fmt.Sprintf("torn header: %d bytes at end of file", avail))
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return res, fmt.Errorf("seglog: scan %s: %w", path, err)
		}
		h := parseHeader(hdr[:])
		if reason := checkHeader(h, res.next, avail); reason != "" {
			return corrupt(reason)
		}
		n := int64(recordSize(int(h.length)))
		if res.end+n > maxSegmentFileBytes {
			return corrupt("record extends past 4 GiB")
		}
		if cap(payload) < int(h.length) {
			payload = make([]byte, h.length)
		}
		payload = payload[:h.length]
		if _, err := io.ReadFull(r, payload); err != nil {
			return res, fmt.Errorf("seglog: scan %s: %w", path, err)
		}
		if crc32.Update(crc32.Checksum(hdr[8:], castagnoli), castagnoli, payload) != h.crc {
			return corrupt("crc mismatch")
		}
		if ib.want(res.end) {
			res.index = append(res.index, indexEntry{rel: uint32(res.next - base), pos: uint32(res.end)})
		}
		res.end += n
		res.next++
	}
	return res, nil
}

// span is an immutable snapshot, taken under Log.mu, of the durable part
// of one segment. Reads through it need no lock.
type span struct {
	f        vfs.File
	path     string
	base     uint64
	next     uint64 // one past the last durable record
	end      int64  // bytes of durable records
	startRel uint32 // relative offset of the record at startPos (from the index)
	startPos int64
}

// readPool recycles the read buffers of Read, which copies the payload
// out; ReadBatch returns slices of its buffer and does not recycle it.
var readPool bufPool

// spanReader reads a segment through a window buffer holding the file
// bytes [winPos, winPos+len(win)).
type spanReader struct {
	span
	win       []byte
	winPos    int64
	pooled    bool    // window buffers come from and go back to readPool
	pooledWin *[]byte // the pooled buffer behind win
}

// fetch returns the file bytes [pos, pos+n), which the caller has checked
// lie within r.end, for the record expected to have offset off. If the
// window does not hold them it reads a new window of at least n and about
// ahead bytes with one ReadAt.
func (r *spanReader) fetch(pos int64, n int, off uint64, ahead int64) ([]byte, error) {
	if pos >= r.winPos && pos+int64(n) <= r.winPos+int64(len(r.win)) {
		off := pos - r.winPos
		return r.win[off : off+int64(n) : off+int64(n)], nil
	}
	size := max(int64(n), min(ahead, r.end-pos))
	if r.pooled {
		readPool.put(r.pooledWin)
		r.pooledWin = readPool.get(int(size))
		r.win = *r.pooledWin
	} else {
		r.win = make([]byte, size)
	}
	r.winPos = pos
	got, err := r.f.ReadAt(r.win, pos)
	if got < len(r.win) {
		r.win = r.win[:got]
		if err == nil || errors.Is(err, io.EOF) {
			return nil, &CorruptionError{Path: r.path, Position: pos + int64(got), Offset: off,
				Reason: fmt.Sprintf("segment file ends at byte %d, before the end of its data at %d", pos+int64(got), r.end)}
		}
		return nil, fmt.Errorf("seglog: read %s: %w", r.path, err)
	}
	return r.win[:n:n], nil
}

// done returns a pooled window.
func (r *spanReader) done() {
	if r.pooled {
		readPool.put(r.pooledWin)
		r.win, r.pooledWin = nil, nil
	}
}

// header reads and checks the header of the record expected at (pos, off).
func (r *spanReader) header(pos int64, off uint64, ahead int64) (header, error) {
	if r.end-pos < headerSize {
		return header{}, &CorruptionError{Path: r.path, Position: pos, Offset: off,
			Reason: fmt.Sprintf("record missing: data ends at byte %d", r.end)}
	}
	b, err := r.fetch(pos, headerSize, off, ahead)
	if err != nil {
		return header{}, err
	}
	h := parseHeader(b)
	if reason := checkHeader(h, off, r.end-pos); reason != "" {
		return header{}, &CorruptionError{Path: r.path, Position: pos, Offset: off, Reason: reason}
	}
	return h, nil
}

// read returns the payloads of consecutive records starting at offset
// want (which must be in [base+startRel, next)): at most maxRecs records,
// and no more than maxBytes payload bytes unless the first record alone is
// larger. Records before want are skipped by their headers (offset and
// length checked); every returned record has its CRC checked. If a record
// after the first is invalid, read returns the valid ones before it and no
// error: the caller meets the error when it reads that offset.
func (r *spanReader) read(want uint64, maxRecs, maxBytes int) ([][]byte, error) {
	// Read ahead enough to cover, usually with one ReadAt, the skip from
	// the index point to want (about one index interval) and the records
	// to return, both estimated from the segment's average record size.
	recs := int64(min(uint64(max(maxRecs, 1)), r.next-want))
	avg := int64(headerSize)
	if n := r.next - r.base; n > 0 {
		avg = max(avg, r.end/int64(n))
	}
	skip := int64(want-r.base-uint64(r.startRel)) * avg
	body := min(recs*avg, min(int64(max(maxBytes, 0)), r.end)+recs*headerSize) + avg

	pos, off := r.startPos, r.base+uint64(r.startRel)
	for off < want {
		h, err := r.header(pos, off, skip+body)
		if err != nil {
			return nil, err
		}
		pos += int64(recordSize(int(h.length)))
		off++
	}
	out := make([][]byte, 0, min(recs, 1024))
	total := 0
	for off < r.next && int64(len(out)) < recs {
		h, err := r.header(pos, off, body)
		if err != nil {
			return partial(out, err)
		}
		if len(out) > 0 && total+int(h.length) > maxBytes {
			break
		}
		n := recordSize(int(h.length))
		rec, err := r.fetch(pos, n, off, body)
		if err != nil {
			return partial(out, err)
		}
		if !checkCRC(h, rec) {
			return partial(out, &CorruptionError{Path: r.path, Position: pos, Offset: off, Reason: "crc mismatch"})
		}
		out = append(out, rec[headerSize:n:n])
		total += int(h.length)
		pos += int64(n)
		off++
	}
	return out, nil
}

// partial returns the records read so far, or err if there are none.
func partial(out [][]byte, err error) ([][]byte, error) {
	if len(out) > 0 {
		return out, nil
	}
	return nil, err
}

// bufPool recycles byte buffers of up to 1 MiB.
type bufPool struct{ p sync.Pool }

// get returns a buffer of length n; the caller passes the pointer back to
// put.
func (bp *bufPool) get(n int) *[]byte {
	if b, _ := bp.p.Get().(*[]byte); b != nil && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

func (bp *bufPool) put(b *[]byte) {
	if b != nil && cap(*b) <= 1<<20 {
		bp.p.Put(b)
	}
}
