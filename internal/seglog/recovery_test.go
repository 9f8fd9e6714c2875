package seglog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordPositions returns the byte position of every record in a segment
// file written by this package, by walking its headers.
func recordPositions(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pos []int64
	for p := 0; p+headerSize <= len(b); {
		pos = append(pos, int64(p))
		p += recordSize(int(parseHeader(b[p:]).length))
	}
	return pos
}

// writeLog creates a log with n records in segments of segBytes and
// closes it.
func writeLog(t *testing.T, opts Options, n int) {
	t.Helper()
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	appendSeq(t, l, n, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func activePath(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(m) == 0 {
		t.Fatal("no segments")
	}
	return m[len(m)-1] // zero-padded names sort by base
}

func flipBit(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

// logBuffer captures slog output.
type logBuffer struct{ bytes.Buffer }

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func TestRecoverTornTail(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, Options{Dir: dir}, 100)
	path := activePath(t, dir)
	pos := recordPositions(t, path)
	st, _ := os.Stat(path)
	last := pos[len(pos)-1]
	// Cut the last record in the middle of its payload (payloadFor(99) is
	// 63 bytes long).
	cut := st.Size() - 5
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	l := openLog(t, Options{Dir: dir, Logger: logs.logger()})
	if l.Next() != 99 {
		t.Fatalf("Next = %d, want 99", l.Next())
	}
	rec := l.Recovery()
	if rec.Segment != path || rec.TruncatedAt != last || rec.DroppedBytes != cut-last || !strings.Contains(rec.Reason, "torn") {
		t.Fatalf("Recovery = %+v; want truncation of %s at %d dropping %d bytes", rec, path, last, cut-last)
	}
	if st, _ := os.Stat(path); st.Size() != last {
		t.Fatalf("file is %d bytes, want %d", st.Size(), last)
	}
	for _, want := range []string{"level=WARN", "segment=" + path, fmt.Sprintf("position=%d", last), fmt.Sprintf("dropped_bytes=%d", cut-last), "reason="} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log %q lacks %q", logs.String(), want)
		}
	}
	checkRange(t, l, 0, 99)
	appendSeq(t, l, 10, 2)
	checkRange(t, l, 0, 109)

	// A torn header (fewer than 16 bytes) is cut as well.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write([]byte{1, 2, 3})
	_ = f.Close()
	l = openLog(t, Options{Dir: dir})
	if l.Next() != 109 || l.Recovery().DroppedBytes != 3 {
		t.Fatalf("Next %d, Recovery %+v", l.Next(), l.Recovery())
	}
}

func TestRecoverZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, Options{Dir: dir, SegmentBytes: 4096}, 100)
	path := activePath(t, dir)
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()+8192); err != nil { // zero-filled extension
		t.Fatal(err)
	}
	l := openLog(t, Options{Dir: dir, SegmentBytes: 4096})
	if l.Next() != 100 {
		t.Fatalf("Next = %d, want 100", l.Next())
	}
	rec := l.Recovery()
	if rec.TruncatedAt != st.Size() || rec.DroppedBytes != 8192 || !strings.Contains(rec.Reason, "zero") || !rec.Preallocated {
		t.Fatalf("Recovery = %+v", rec)
	}
	checkRange(t, l, 0, 100)
}

func TestRecoverBitFlipInActiveSegment(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, Options{Dir: dir}, 100)
	path := activePath(t, dir)
	pos := recordPositions(t, path)
	st, _ := os.Stat(path)
	flipBit(t, path, pos[50]+headerSize+3) // inside the payload of record 50
	l := openLog(t, Options{Dir: dir})
	if l.Next() != 50 {
		t.Fatalf("Next = %d, want 50", l.Next())
	}
	rec := l.Recovery()
	if rec.TruncatedAt != pos[50] || rec.DroppedBytes != st.Size()-pos[50] || rec.Reason != "crc mismatch" || rec.Preallocated {
		t.Fatalf("Recovery = %+v, want truncation at %d", rec, pos[50])
	}
	checkRange(t, l, 0, 50)
	appendSeq(t, l, 5, 1)
	checkRange(t, l, 0, 55)
}

func TestRecoverMisplacedRecord(t *testing.T) {
	// A record that is intact but carries the wrong offset (say, copied
	// from elsewhere) is rejected by the offset check.
	dir := t.TempDir()
	writeLog(t, Options{Dir: dir}, 10)
	path := activePath(t, dir)
	b, _ := os.ReadFile(path)
	pos := recordPositions(t, path)
	b = append(b, b[pos[3]:pos[4]]...) // record 3 again, at offset 10's place
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Options{Dir: dir})
	if l.Next() != 10 || !strings.Contains(l.Recovery().Reason, "offset mismatch") {
		t.Fatalf("Next %d, Recovery %+v", l.Next(), l.Recovery())
	}
}

func TestBitFlipInSealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2048, IndexIntervalBytes: 256}
	writeLog(t, opts, 200)
	l := openLog(t, opts)
	segs := l.Segments()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := segs[1]
	pos := recordPositions(t, sealed.Path)
	victim := sealed.Base + 7
	victimPos := pos[7]
	flipBit(t, sealed.Path, victimPos+headerSize+2)

	l = openLog(t, opts)
	if (l.Recovery() != Recovery{}) || l.Next() != 200 {
		t.Fatalf("a sealed segment was repaired: Next %d, Recovery %+v", l.Next(), l.Recovery())
	}
	_, err := l.Read(victim)
	var ce *CorruptionError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("Read of damaged record: %v", err)
	}
	if ce.Path != sealed.Path || ce.Position != victimPos || ce.Offset != victim {
		t.Fatalf("CorruptionError = %+v, want %s at %d", ce, sealed.Path, victimPos)
	}
	if msg := err.Error(); !strings.Contains(msg, sealed.Path) || !strings.Contains(msg, fmt.Sprintf("byte %d", victimPos)) {
		t.Fatalf("error %q does not name file and position", msg)
	}
	// ReadBatch returns the good records before the damage, then the error.
	recs, err := l.ReadBatch(sealed.Base, 100, 1<<20)
	if err != nil || len(recs) != 7 {
		t.Fatalf("ReadBatch before damage = %d records, %v", len(recs), err)
	}
	if _, err := l.ReadBatch(victim, 100, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadBatch at damage: %v", err)
	}
	// Everything else is intact.
	checkRange(t, l, 0, victim)
	checkRange(t, l, victim+1, 200)
}

func TestSealedIndexRebuilt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 4096, IndexIntervalBytes: 200}
	writeLog(t, opts, 300)
	idxs, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(idxs) < 3 {
		t.Fatalf("only %d index files", len(idxs))
	}
	orig := make(map[string][]byte)
	for _, p := range idxs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		orig[p] = b
	}
	// Missing, corrupt, and valid-but-wrong (another segment's) indexes.
	if err := os.Remove(idxs[0]); err != nil {
		t.Fatal(err)
	}
	flipBit(t, idxs[1], 45)
	if err := os.WriteFile(idxs[2], orig[idxs[0]], 0o644); err != nil {
		t.Fatal(err)
	}

	l := openLog(t, opts)
	if (l.Recovery() != Recovery{}) {
		t.Fatalf("Recovery = %+v", l.Recovery())
	}
	checkRange(t, l, 0, 300)
	for _, p := range idxs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("index %s not rewritten: %v", p, err)
		}
		if !bytes.Equal(b, orig[p]) {
			t.Fatalf("rebuilt index %s differs from the one written at roll", p)
		}
	}
}

func TestSealedSegmentCorruptWithoutIndex(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2048, IndexIntervalBytes: 128}
	writeLog(t, opts, 100)
	first := filepath.Join(dir, segmentName(0))
	pos := recordPositions(t, first)
	flipBit(t, first, pos[5]+headerSize+1)
	if err := os.Remove(filepath.Join(dir, indexName(0))); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	l := openLog(t, Options{Dir: dir, SegmentBytes: 2048, IndexIntervalBytes: 128, Logger: logs.logger()})
	if l.Next() != 100 || l.First() != 0 {
		t.Fatalf("[%d, %d)", l.First(), l.Next())
	}
	if !strings.Contains(logs.String(), "sealed segment is corrupt") {
		t.Fatalf("no warning logged: %s", logs.String())
	}
	if _, err := l.Read(5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read(5) of the damaged record: %v", err)
	}
	// Records around the damage stay readable: skipping record 5 needs
	// only its (intact) header.
	checkRange(t, l, 0, 5)
	checkRange(t, l, 6, 100)
	if _, err := os.Stat(filepath.Join(dir, indexName(0))); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an index was written for a corrupt segment")
	}
}

func TestEmptyActiveSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1024}
	writeLog(t, opts, 50)
	l := openLog(t, opts)
	next := l.Next()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// An empty newest segment, as left by a crash right after a roll.
	if err := os.WriteFile(filepath.Join(dir, segmentName(next)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, opts)
	if l.Next() != next || (l.Recovery() != Recovery{}) {
		t.Fatalf("Next %d want %d, Recovery %+v", l.Next(), next, l.Recovery())
	}
	checkRange(t, l, 0, next)
	appendSeq(t, l, 20, 2)
	checkRange(t, l, 0, next+20)
}

func TestZeroHeaderIsNeverValid(t *testing.T) {
	rec := appendRecord(nil, 0, nil)
	if parseHeader(rec).zero() {
		t.Fatal("the record of offset 0 with an empty payload has an all-zero header")
	}
}
