package seglog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// payloadFor returns the deterministic test payload of offset i; lengths
// vary from 0 to 200 bytes.
func payloadFor(i uint64) []byte {
	n := int((i * 37) % 201)
	p := make([]byte, n)
	s := fmt.Sprintf("<%d>", i)
	for j := range p {
		p[j] = s[j%len(s)]
	}
	return p
}

func openLog(t testing.TB, opts Options) *Log {
	t.Helper()
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// appendSeq appends payloadFor(Next()...) in batches of 1..maxBatch
// records until n records were appended, checking the returned offsets.
func appendSeq(t testing.TB, l *Log, n, maxBatch int) {
	t.Helper()
	for n > 0 {
		k := min(n, 1+int(l.Next()%uint64(maxBatch)))
		next := l.Next()
		batch := make([][]byte, k)
		for i := range batch {
			batch[i] = payloadFor(next + uint64(i))
		}
		first, err := l.Append(context.Background(), batch)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if first != next {
			t.Fatalf("Append returned first %d, want %d", first, next)
		}
		n -= k
	}
}

// checkRange reads every offset in [from, to) with Read and, in chunks,
// with ReadBatch.
func checkRange(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for off := from; off < to; off++ {
		got, err := l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if !bytes.Equal(got, payloadFor(off)) {
			t.Fatalf("Read(%d) = %q, want %q", off, got, payloadFor(off))
		}
	}
	for off := from; off < to; {
		recs, err := l.ReadBatch(off, 7, 1000)
		if err != nil {
			t.Fatalf("ReadBatch(%d): %v", off, err)
		}
		if len(recs) == 0 {
			t.Fatalf("ReadBatch(%d) returned nothing", off)
		}
		for i, p := range recs {
			if !bytes.Equal(p, payloadFor(off+uint64(i))) {
				t.Fatalf("ReadBatch(%d)[%d] = %q, want %q", off, i, p, payloadFor(off+uint64(i)))
			}
		}
		off += uint64(len(recs))
	}
}

func checkSegments(t *testing.T, l *Log) []SegmentInfo {
	t.Helper()
	segs := l.Segments()
	if len(segs) == 0 {
		t.Fatal("no segments")
	}
	if segs[0].Base != l.First() || segs[len(segs)-1].Next != l.Next() {
		t.Fatalf("segments %+v do not span [First %d, Next %d)", segs, l.First(), l.Next())
	}
	var total int64
	for i, s := range segs {
		if i > 0 && s.Base != segs[i-1].Next {
			t.Fatalf("segment %d starts at %d, previous ends at %d", i, s.Base, segs[i-1].Next)
		}
		if filepath.Base(s.Path) != segmentName(s.Base) {
			t.Fatalf("segment path %s for base %d", s.Path, s.Base)
		}
		total += s.Bytes
	}
	if total != l.Size() {
		t.Fatalf("Size() = %d, segments sum to %d", l.Size(), total)
	}
	return segs
}

func TestRoundTripAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2048, IndexIntervalBytes: 100}
	l := openLog(t, opts)
	if l.First() != 0 || l.Next() != 0 || l.Size() != 0 {
		t.Fatalf("empty log: First %d Next %d Size %d", l.First(), l.Next(), l.Size())
	}
	if (l.Recovery() != Recovery{}) {
		t.Fatalf("Recovery of a new log = %+v", l.Recovery())
	}
	const n = 600
	appendSeq(t, l, n, 7)
	if l.Next() != n {
		t.Fatalf("Next = %d, want %d", l.Next(), n)
	}
	segs := checkSegments(t, l)
	if len(segs) < 5 {
		t.Fatalf("only %d segments; want several rolls", len(segs))
	}
	for _, s := range segs {
		if s.Bytes > opts.SegmentBytes {
			t.Fatalf("segment %d has %d bytes > SegmentBytes", s.Base, s.Bytes)
		}
	}
	for _, s := range segs[:len(segs)-1] {
		if _, err := os.Stat(filepath.Join(dir, indexName(s.Base))); err != nil {
			t.Fatalf("sealed segment %d has no index: %v", s.Base, err)
		}
	}
	checkRange(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, opts)
	if l.First() != 0 || l.Next() != n {
		t.Fatalf("after reopen First %d Next %d, want 0 %d", l.First(), l.Next(), n)
	}
	if (l.Recovery() != Recovery{}) {
		t.Fatalf("clean reopen reported recovery %+v", l.Recovery())
	}
	if got := checkSegments(t, l); len(got) != len(segs) {
		t.Fatalf("reopen found %d segments, had %d", len(got), len(segs))
	}
	checkRange(t, l, 0, n)
	appendSeq(t, l, 100, 3)
	checkRange(t, l, 0, n+100)
}

func TestBatchStaysInOneSegment(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 1000})
	type call struct{ first, n uint64 }
	var calls []call
	for i := range 100 {
		k := 1 + i%5
		batch := make([][]byte, k)
		for j := range batch {
			batch[j] = bytes.Repeat([]byte{'x'}, 50)
		}
		first, err := l.Append(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, call{first, uint64(k)})
	}
	segs := l.Segments()
	for _, c := range calls {
		for _, s := range segs {
			if c.first >= s.Base && c.first < s.Next && c.first+c.n > s.Next {
				t.Fatalf("batch [%d, %d) split at segment end %d", c.first, c.first+c.n, s.Next)
			}
		}
	}

	// A batch larger than a segment is split over fresh segments.
	big := make([][]byte, 30)
	for i := range big {
		big[i] = bytes.Repeat([]byte{'y'}, 100)
	}
	before := len(l.Segments())
	first, err := l.Append(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	segs = l.Segments()
	if len(segs) < before+3 {
		t.Fatalf("oversized batch made %d segments, want >= %d", len(segs), before+3)
	}
	for i := range big {
		p, err := l.Read(first + uint64(i))
		if err != nil || !bytes.Equal(p, big[i]) {
			t.Fatalf("Read(%d) = %q, %v", first+uint64(i), p, err)
		}
	}
	for _, s := range segs {
		if s.Bytes > 1000 {
			t.Fatalf("segment %d has %d bytes", s.Base, s.Bytes)
		}
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 64 << 10})
	const (
		writers = 32
		calls   = 40
	)
	type result struct {
		first    uint64
		payloads [][]byte
	}
	results := make([][]result, writers)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var readErr atomic.Value
	// Readers must only ever see durable, complete records.
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				next := l.Next()
				if next == 0 {
					continue
				}
				if _, err := l.Read(next - 1); err != nil {
					readErr.Store(err)
					return
				}
				if _, err := l.ReadBatch(next/2, 100, 64<<10); err != nil {
					readErr.Store(err)
					return
				}
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				k := 1 + (w+c)%3
				batch := make([][]byte, k)
				for j := range batch {
					batch[j] = fmt.Appendf(nil, "writer %d call %d record %d", w, c, j)
				}
				first, err := l.Append(context.Background(), batch)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				results[w] = append(results[w], result{first, batch})
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if err := readErr.Load(); err != nil {
		t.Fatalf("concurrent read: %v", err)
	}

	seen := make([]bool, l.Next())
	total := 0
	for _, rs := range results {
		for _, r := range rs {
			for i, p := range r.payloads {
				off := r.first + uint64(i)
				if off >= uint64(len(seen)) || seen[off] {
					t.Fatalf("offset %d out of range or assigned twice", off)
				}
				seen[off] = true
				got, err := l.Read(off)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("Read(%d) = %q, %v; want %q", off, got, err, p)
				}
				total++
			}
		}
	}
	if total != len(seen) {
		t.Fatalf("%d records appended but Next() = %d: offsets not dense", total, len(seen))
	}
	syncs := l.syncs.Load()
	t.Logf("%d appends, %d records, %d fsyncs", writers*calls, total, syncs)
	if syncs >= writers*calls {
		t.Fatalf("%d fsyncs for %d appends: group commit did not batch", syncs, writers*calls)
	}
}

func TestAppendAsync(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 4096})
	const n = 500
	var wg sync.WaitGroup
	firsts := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		l.AppendAsync([][]byte{fmt.Appendf(nil, "async %d", i)}, func(first uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("AppendAsync %d: %v", i, err)
			}
			firsts[i] = first
		})
	}
	wg.Wait()
	// A single caller's async appends are committed in call order.
	for i := range n {
		if firsts[i] != uint64(i) {
			t.Fatalf("async append %d got offset %d", i, firsts[i])
		}
		got, err := l.Read(firsts[i])
		if err != nil || string(got) != fmt.Sprintf("async %d", i) {
			t.Fatalf("Read(%d) = %q, %v", firsts[i], got, err)
		}
	}
	var called atomic.Int32
	l.AppendAsync([][]byte{make([]byte, DefaultMaxRecordBytes+1)}, func(_ uint64, err error) {
		called.Add(1)
		if !errors.Is(err, ErrRecordTooLarge) {
			t.Errorf("oversized AppendAsync: %v", err)
		}
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.AppendAsync([][]byte{[]byte("late")}, func(_ uint64, err error) {
		called.Add(1)
		if !errors.Is(err, ErrClosed) {
			t.Errorf("AppendAsync after Close: %v", err)
		}
	})
	if called.Load() != 2 {
		t.Fatalf("done called %d times, want 2", called.Load())
	}
}

func TestReadBatchLimits(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 100 * 116})
	rec := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	for i := range 250 {
		if _, err := l.Append(context.Background(), [][]byte{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		off           uint64
		max, maxBytes int
		want          int
	}{
		{0, 10, 1 << 20, 10},
		{0, 1000, 250, 2},
		{0, 1000, 300, 3},
		{5, 5, 0, 1},           // at least one record
		{5, 0, 1000, 1},        // max < 1 acts as 1
		{95, 1000, 1 << 20, 5}, // stops at the end of the segment
		{245, 1000, 1 << 20, 5},
		{249, 10, 50, 1}, // first record larger than maxBytes
	}
	for _, c := range cases {
		recs, err := l.ReadBatch(c.off, c.max, c.maxBytes)
		if err != nil {
			t.Fatalf("ReadBatch(%d, %d, %d): %v", c.off, c.max, c.maxBytes, err)
		}
		if len(recs) != c.want {
			t.Fatalf("ReadBatch(%d, %d, %d) returned %d records, want %d", c.off, c.max, c.maxBytes, len(recs), c.want)
		}
		for i, p := range recs {
			if !bytes.Equal(p, rec(int(c.off)+i)) {
				t.Fatalf("ReadBatch(%d)[%d] wrong payload", c.off, i)
			}
		}
	}
	for _, off := range []uint64{250, 1000} {
		if _, err := l.ReadBatch(off, 1, 1); err != ErrOutOfRange {
			t.Fatalf("ReadBatch(%d): %v, want ErrOutOfRange", off, err)
		}
		if _, err := l.Read(off); err != ErrOutOfRange {
			t.Fatalf("Read(%d): %v, want ErrOutOfRange", off, err)
		}
	}
}

func TestErrors(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), MaxRecordBytes: 100})
	ctx := context.Background()
	if _, err := l.Read(0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read on empty log: %v", err)
	}
	if _, err := l.Append(ctx, [][]byte{make([]byte, 100), make([]byte, 101)}); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized Append: %v", err)
	}
	if l.Next() != 0 {
		t.Fatalf("oversized batch was partly written: Next %d", l.Next())
	}
	if first, err := l.Append(ctx, nil); err != nil || first != 0 {
		t.Fatalf("empty Append = %d, %v", first, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(canceled, [][]byte{[]byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled context: %v", err)
	}
	if _, err := l.Append(ctx, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(ctx, [][]byte{[]byte("y")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.Append(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("empty Append after Close: %v", err)
	}
	if _, err := l.Read(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := l.DeleteSegmentsBefore(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("DeleteSegmentsBefore after Close: %v", err)
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
	if _, err := Open(Options{Dir: t.TempDir(), SegmentBytes: MaxSegmentBytes + 1}); err == nil {
		t.Fatal("Open with huge SegmentBytes succeeded")
	}
}

func TestAppendCanceledWhileQueued(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir()})
	pending := func() int {
		l.q.mu.Lock()
		defer l.q.mu.Unlock()
		return len(l.q.pending)
	}
	waitFor := func(cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("timed out")
			}
		}
	}
	// Hold every sync job: the writer takes the next request and then
	// blocks waiting for a job, so the request after it stays queued.
	var held [syncJobs]*syncJob
	for i := range held {
		held[i] = <-l.w.free
	}
	firstDone := make(chan error, 1)
	l.AppendAsync([][]byte{[]byte("a")}, func(_ uint64, err error) { firstDone <- err })
	waitFor(func() bool { return pending() == 0 }) // the writer took "a"

	ctx, cancel := context.WithCancel(context.Background())
	secondDone := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, [][]byte{[]byte("b")})
		secondDone <- err
	}()
	waitFor(func() bool { return pending() == 1 })
	cancel()
	if err := <-secondDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Append: %v", err)
	}
	for _, j := range held {
		l.w.free <- j
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), [][]byte{[]byte("c")}); err != nil {
		t.Fatal(err)
	}
	if l.Next() != 2 {
		t.Fatalf("Next = %d, want 2: the canceled batch was written", l.Next())
	}
	if p, _ := l.Read(1); string(p) != "c" {
		t.Fatalf("Read(1) = %q", p)
	}
}

func TestOnlyDurableRecordsAreVisible(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var block atomic.Bool
	l := openLog(t, Options{Dir: t.TempDir(), fsync: func(f vfs.File) error {
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		return f.Sync()
	}})
	appendSeq(t, l, 3, 1)
	block.Store(true)
	done := make(chan error, 1)
	l.AppendAsync([][]byte{[]byte("pending")}, func(_ uint64, err error) { done <- err })
	<-entered // written, fsync in progress
	st, err := os.Stat(l.Segments()[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= l.Size() {
		t.Fatalf("file has %d bytes, durable size %d: the record was not written before fsync", st.Size(), l.Size())
	}
	if l.Next() != 3 {
		t.Fatalf("Next = %d before the fsync completed", l.Next())
	}
	if _, err := l.Read(3); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read of a record not yet fsynced: %v", err)
	}
	if recs, err := l.ReadBatch(0, 100, 1<<20); err != nil || len(recs) != 3 {
		t.Fatalf("ReadBatch = %d records, %v; want the 3 durable ones", len(recs), err)
	}
	block.Store(false)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, err := l.Read(3); err != nil || string(p) != "pending" {
		t.Fatalf("Read(3) = %q, %v", p, err)
	}
}

func TestFsyncFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	opts := Options{Dir: dir, fsync: func(f vfs.File) error {
		if failing.Load() {
			return syscall.EIO
		}
		return f.Sync()
	}}
	l := openLog(t, opts)
	appendSeq(t, l, 10, 3)
	failing.Store(true)
	_, err := l.Append(context.Background(), [][]byte{[]byte("lost")})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append with failing fsync: %v", err)
	}
	if l.Next() != 10 {
		t.Fatalf("failed append became visible: Next %d", l.Next())
	}
	failing.Store(false)
	if _, err := l.Append(context.Background(), [][]byte{[]byte("after")}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after failure: %v", err)
	}
	done := make(chan error, 1)
	l.AppendAsync([][]byte{[]byte("after")}, func(_ uint64, err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrFailed) {
		t.Fatalf("AppendAsync after failure: %v", err)
	}
	checkRange(t, l, 0, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, Options{Dir: dir})
	if l.Next() != 10 {
		t.Fatalf("after reopen Next = %d, want 10", l.Next())
	}
	appendSeq(t, l, 5, 2)
	checkRange(t, l, 0, 15)
}

func TestDeleteSegmentsBefore(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1024}
	l := openLog(t, opts)
	appendSeq(t, l, 300, 4)
	segs := checkSegments(t, l)
	if len(segs) < 6 {
		t.Fatalf("only %d segments", len(segs))
	}
	if n, err := l.DeleteSegmentsBefore(segs[0].Next - 1); err != nil || n != 0 {
		t.Fatalf("DeleteSegmentsBefore inside first segment = %d, %v", n, err)
	}
	// segs[2] holds offsets below and at or above the bound: it stays.
	n, err := l.DeleteSegmentsBefore(segs[2].Base + 1)
	if err != nil || n != 2 {
		t.Fatalf("DeleteSegmentsBefore = %d, %v; want 2", n, err)
	}
	if l.First() != segs[2].Base {
		t.Fatalf("First = %d, want %d", l.First(), segs[2].Base)
	}
	for _, s := range segs[:2] {
		if _, err := os.Stat(s.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("deleted segment %s still exists: %v", s.Path, err)
		}
		if _, err := os.Stat(filepath.Join(dir, indexName(s.Base))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("index of deleted segment %d still exists", s.Base)
		}
	}
	if _, err := l.Read(segs[2].Base - 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Read of deleted offset: %v", err)
	}
	checkSegments(t, l)
	checkRange(t, l, l.First(), l.Next())

	// Far beyond the end: every sealed segment goes, the active one stays.
	n, err = l.DeleteSegmentsBefore(l.Next() + 1000)
	if err != nil || n != len(segs)-3 {
		t.Fatalf("DeleteSegmentsBefore(all) = %d, %v; want %d", n, err, len(segs)-3)
	}
	active := segs[len(segs)-1]
	if got := l.Segments(); len(got) != 1 || got[0].Base != active.Base {
		t.Fatalf("segments left: %+v", got)
	}
	if l.First() != active.Base {
		t.Fatalf("First = %d, want %d", l.First(), active.Base)
	}
	checkRange(t, l, l.First(), l.Next())
	appendSeq(t, l, 50, 3)
	checkRange(t, l, l.First(), l.Next())
	first, next := l.First(), l.Next()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, opts)
	if l.First() != first || l.Next() != next {
		t.Fatalf("after reopen [%d, %d), want [%d, %d)", l.First(), l.Next(), first, next)
	}
	checkRange(t, l, first, next)
}

func TestDeleteWhileReading(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 1024})
	appendSeq(t, l, 400, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for off := uint64(0); off < 400; off++ {
				p, err := l.Read(off)
				if errors.Is(err, ErrOutOfRange) {
					continue
				}
				if err != nil || !bytes.Equal(p, payloadFor(off)) {
					t.Errorf("Read(%d) = %q, %v", off, p, err)
					return
				}
			}
		})
	}
	for bound := uint64(0); bound < 400; bound += 20 {
		if _, err := l.DeleteSegmentsBefore(bound); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestOrphanFilesCleanedOnOpen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1024}
	l := openLog(t, opts)
	appendSeq(t, l, 100, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, indexName(1<<40))
	tmp := filepath.Join(dir, indexName(0)+".tmp")
	other := filepath.Join(dir, "README")
	for _, p := range []string{orphan, tmp, other} {
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l = openLog(t, opts)
	checkRange(t, l, 0, 100)
	for _, p := range []string{orphan, tmp} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not removed", p)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("unrelated file touched: %v", err)
	}
}

func TestCorruptionErrorMessage(t *testing.T) {
	err := error(&CorruptionError{Path: "/x/00000000000000000000.log", Position: 42, Offset: 3, Reason: "crc mismatch"})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatal("CorruptionError does not match ErrCorrupt")
	}
	for _, want := range []string{"/x/00000000000000000000.log", "byte 42", "crc mismatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q does not mention %q", err, want)
		}
	}
}
