package seglog

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fileSize returns the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// activeBytes returns the bytes of records in the active segment.
func activeBytes(l *Log) int64 {
	segs := l.Segments()
	return segs[len(segs)-1].Bytes
}

// waitFilled waits until the active segment's file holds zeros past its
// records, as the filler writes them.
func waitFilled(t *testing.T, l *Log, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) <= activeBytes(l) {
		if time.Now().After(deadline) {
			t.Fatalf("the active segment was not preallocated: file %d bytes, records %d", fileSize(t, path), activeBytes(l))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The active segment's file is filled with zeros ahead of the records
// while it is written, and cut back to its records on Close: a clean
// restart finds nothing to repair.
func TestPreallocatedZerosAheadAndCutOnClose(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir})
	appendSeq(t, l, 100, 3)
	path := activePath(t, dir)
	waitFilled(t, l, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tail := data[l.Size():]; !bytes.Equal(tail, make([]byte, len(tail))) {
		t.Fatal("the space past the records is not all zeros")
	}
	if int64(len(data)) > l.Size()+maxZeroTail {
		t.Fatalf("%d bytes preallocated past the records, more than the %d a crash may leave", int64(len(data))-l.Size(), maxZeroTail)
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != size {
		t.Fatalf("after Close the segment file is %d bytes, want its %d bytes of records", got, size)
	}
	l = openLog(t, Options{Dir: dir})
	if (l.Recovery() != Recovery{}) {
		t.Fatalf("a clean restart repaired something: %+v", l.Recovery())
	}
	checkRange(t, l, 0, 100)
}

// A sealed segment ends with its last record, and its index matches it,
// however far the filler had gone.
func TestSealedSegmentsAreCutToTheirRecords(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 64 << 10}
	l := openLog(t, opts)
	for range 40 { // each batch waits for the filler to get ahead
		appendSeq(t, l, 50, 5)
		if activeBytes(l) < opts.SegmentBytes-4096 {
			waitFilled(t, l, activePath(t, dir))
		}
	}
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		if got := fileSize(t, s.Path); got != s.Bytes {
			t.Fatalf("sealed segment %s is %d bytes on disk, %d bytes of records", s.Path, got, s.Bytes)
		}
		if got := fileSize(t, s.Path); got > opts.SegmentBytes {
			t.Fatalf("sealed segment %s is %d bytes, more than a segment", s.Path, got)
		}
	}
	next := l.Next()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, opts)
	if (l.Recovery() != Recovery{}) || l.Next() != next {
		t.Fatalf("reopen: Next %d (want %d), Recovery %+v", l.Next(), next, l.Recovery())
	}
	checkRange(t, l, 0, next)
}

// copyDir copies the regular files of src into a new directory: the disk
// image a killed process leaves (everything it wrote is in the page cache,
// synced or not).
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// After a crash the zeros ahead of the records are dropped as preallocated
// space, every acknowledged record is there, and appends go on.
func TestCrashLeavesPreallocatedTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir})
	appendSeq(t, l, 300, 4)
	waitFilled(t, l, activePath(t, dir))
	image := copyDir(t, dir) // while l is open: no Close, no cut

	c := openLog(t, Options{Dir: image})
	rec := c.Recovery()
	if !rec.Preallocated || rec.DroppedBytes == 0 || rec.TruncatedAt != l.Size() {
		t.Fatalf("Recovery = %+v, want the zero tail after %d bytes dropped as preallocated", rec, l.Size())
	}
	checkRange(t, c, 0, 300)
	appendSeq(t, c, 50, 4)
	checkRange(t, c, 0, 350)
}

// Concurrent appenders never have their records overwritten by the
// filler's zeros, across many segment rolls (run with -race).
func TestFillerNeverOverwritesRecords(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 6 << 20, preallocMaxRate: 1 << 40} // fill however fast it goes
	l := openLog(t, opts)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 400 {
				if _, err := l.Append(t.Context(), [][]byte{payload, payload}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if l.Next() != 3200 || len(l.Segments()) < 5 {
		t.Fatalf("Next %d in %d segments, want 3200 in several", l.Next(), len(l.Segments()))
	}
	for off := range l.Next() {
		p, err := l.Read(off) // checks the CRC and the offset
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if !bytes.Equal(p, payload) {
			t.Fatalf("record %d changed", off)
		}
	}
}

// A log written fast is not preallocated (the zeros would cost more than
// the commits they speed up); once it slows down, it is again.
func TestNoPreallocationWhileBusy(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, preallocMaxRate: 1 << 20})
	big := make([]byte, 2<<20) // 2 MiB per write: far above 1 MiB/s
	for range 3 {
		if _, err := l.Append(t.Context(), [][]byte{big}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // give a (wrongly) woken filler time to show
	if got, want := fileSize(t, activePath(t, dir)), activeBytes(l); got != want {
		t.Fatalf("a busy log was preallocated: file %d bytes, records %d", got, want)
	}
	time.Sleep(2 * rateWindow) // the busy window passes
	appendSeq(t, l, 3, 1)
	waitFilled(t, l, activePath(t, dir))
}

func TestWriteRate(t *testing.T) {
	var r WriteRate
	t0 := time.Unix(1000, 0)
	r.Add(0, t0) // starts a window
	if got := r.Add(1000, t0.Add(10*time.Millisecond)); got != 10_000 {
		t.Fatalf("1000 bytes in the current window = %d B/s, want 10000", got)
	}
	// The next window keeps the last one's rate until it exceeds it.
	if got := r.Add(10, t0.Add(100*time.Millisecond)); got != 10_000 {
		t.Fatalf("rate after the window turned = %d B/s, want the last window's 10000", got)
	}
	// A window that turns late is scaled to its length.
	if got := r.Add(0, t0.Add(250*time.Millisecond)); got != 60 {
		t.Fatalf("10 bytes in 150 ms = %d B/s, want 60 (6 bytes per 100 ms window)", got)
	}
	// After a pause longer than a window the rate is what came since.
	if got := r.Add(5, t0.Add(10*time.Second)); got != 50 {
		t.Fatalf("rate after 10 s idle = %d B/s, want 50", got)
	}
}
