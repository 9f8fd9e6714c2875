package seglog_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/seglog"
)

func appendOne(l *seglog.Log, body string) (uint64, error) {
	return l.Append(context.Background(), [][]byte{[]byte(body)})
}

func readAll(t *testing.T, l *seglog.Log) []string {
	t.Helper()
	var out []string
	for off := l.First(); off < l.Next(); off++ {
		p, err := l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		out = append(out, string(p))
	}
	return out
}

// A failed fsync fails the append and the log; Recover fails while the
// device does, then brings the log back without the failed record, which
// never turns durable, not even after a later successful fsync or a power
// cut. A full disk is the same, with ENOSPC.
func TestRecoverAfterIOErrors(t *testing.T) {
	for _, c := range []struct {
		name         string
		inject, heal func(*faultfs.FS)
		cause        error
	}{
		{"fsync EIO", func(fs *faultfs.FS) { fs.FailSyncs(syscall.EIO) }, func(fs *faultfs.FS) { fs.FailSyncs(nil) }, syscall.EIO},
		{"write EIO", func(fs *faultfs.FS) { fs.FailWrites(syscall.EIO) }, func(fs *faultfs.FS) { fs.FailWrites(nil) }, syscall.EIO},
		{"disk full", func(fs *faultfs.FS) { fs.SetCapacity(fs.Used() + 10) }, func(fs *faultfs.FS) { fs.SetCapacity(0) }, syscall.ENOSPC},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := faultfs.New()
			l, err := seglog.Open(seglog.Options{FS: fs, Dir: "/log"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for i := 0; i < 5; i++ {
				if _, err := appendOne(l, fmt.Sprint("ok-", i)); err != nil {
					t.Fatal(err)
				}
			}
			c.inject(fs)
			if _, err := appendOne(l, "failed-record-with-a-body-longer-than-ten-bytes"); !errors.Is(err, seglog.ErrFailed) || !errors.Is(err, c.cause) {
				t.Fatalf("append on a failing disk: %v, want ErrFailed and %v", err, c.cause)
			}
			if _, err := appendOne(l, "refused"); !errors.Is(err, seglog.ErrFailed) {
				t.Fatalf("append on a failed log: %v, want ErrFailed", err)
			}
			if c.name == "fsync EIO" {
				if err := l.Recover(context.Background()); !errors.Is(err, syscall.EIO) {
					t.Fatalf("Recover while fsync fails: %v, want EIO", err)
				}
			}
			c.heal(fs)
			if err := l.Recover(context.Background()); err != nil {
				t.Fatalf("Recover once the disk is back: %v", err)
			}
			if err := l.Recover(context.Background()); err != nil {
				t.Fatalf("Recover of a healthy log: %v", err)
			}
			off, err := appendOne(l, "after")
			if err != nil || off != 5 {
				t.Fatalf("append after Recover = %d, %v; want offset 5", off, err)
			}
			want := fmt.Sprint([]string{"ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "after"})
			if got := fmt.Sprint(readAll(t, l)); got != want {
				t.Fatalf("log = %s, want %s", got, want)
			}
			// And after a power cut: the same, nothing of the failed record.
			fs.CutPower()
			again, err := seglog.Open(seglog.Options{FS: fs.Crash(rand.New(rand.NewPCG(1, 2))), Dir: "/log"})
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if got := fmt.Sprint(readAll(t, again)); got != want {
				t.Fatalf("after a power cut: %s, want %s", got, want)
			}
		})
	}
}

// Sealed segments nobody reads close their files and reopen on the next
// read, also while readers and the janitor race.
func TestIdleSegmentFilesCloseAndReopen(t *testing.T) {
	fs := faultfs.New()
	l, err := seglog.Open(seglog.Options{FS: fs, Dir: "/log", SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 200; i++ {
		if _, err := appendOne(l, fmt.Sprintf("record %03d %s", i, string(make([]byte, 100)))); err != nil {
			t.Fatal(err)
		}
	}
	segs := len(l.Segments())
	if segs < 5 {
		t.Fatalf("%d segments, want several", segs)
	}
	if n := l.CloseIdleFiles(0); n != segs-1 {
		t.Fatalf("closed %d files, want every sealed one (%d)", n, segs-1)
	}
	if n := l.CloseIdleFiles(0); n != 0 {
		t.Fatalf("closed %d files twice", n)
	}
	check := func() {
		for off := l.First(); off < l.Next(); off++ {
			p, err := l.Read(off)
			if err != nil || string(p[:10]) != fmt.Sprintf("record %03d", off) {
				t.Errorf("Read(%d) = %.10q, %v", off, p, err)
				return
			}
		}
	}
	check() // reopens
	if n := l.CloseIdleFiles(time.Hour); n != 0 {
		t.Fatalf("closed %d files read just now", n)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				l.CloseIdleFiles(0)
			}
		}
	}()
	for i := 0; i < 20; i++ {
		check()
	}
	close(stop)
	wg.Wait()
}

// A log that fails and recovers again and again (a full disk, retried every second by a
// stalled replica) says so once at error level, and its recovery once at info level, not
// at every attempt.
func TestRepeatedFailuresAreLoggedOnce(t *testing.T) {
	var lines strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return lines.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	fs := faultfs.New()
	l, err := seglog.Open(seglog.Options{FS: fs, Dir: "/log", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fs.SetCapacity(fs.Used() + 10)
	for i := 0; i < 10; i++ {
		if _, err := appendOne(l, "a record longer than the ten bytes left"); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append %d on a full disk: %v, want ENOSPC", i, err)
		}
		if err := l.Recover(context.Background()); err != nil {
			t.Fatalf("Recover %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	out := lines.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Fatalf("%d error lines for 10 failures, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "level=INFO"); n != 1 {
		t.Fatalf("%d info lines for 10 recoveries, want 1:\n%s", n, out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
