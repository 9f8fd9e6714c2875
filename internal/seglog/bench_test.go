package seglog

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkAppend1KiB measures group commit: many goroutines each append
// one 1 KiB record per call and wait for its fsync.
func BenchmarkAppend1KiB(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := Open(Options{Dir: b.TempDir(), NoSync: bc.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			payload := make([]byte, 1024)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.SetParallelism(128) // 128 callers per GOMAXPROCS
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				batch := [][]byte{payload}
				for pb.Next() {
					if _, err := l.Append(context.Background(), batch); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			if !bc.noSync {
				b.ReportMetric(float64(b.N)/float64(max(l.syncs.Load(), 1)), "appends/fsync")
			}
		})
	}
}

// BenchmarkAppendAsync1KiB measures the pipelined path: one goroutine
// keeps up to 4096 single-record AppendAsync calls in flight.
func BenchmarkAppendAsync1KiB(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := make([]byte, 1024)
	batch := [][]byte{payload}
	sem := make(chan struct{}, 4096)
	var wg sync.WaitGroup
	done := func(_ uint64, err error) {
		if err != nil {
			b.Error(err)
		}
		<-sem
		wg.Done()
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sem <- struct{}{}
		wg.Add(1)
		l.AppendAsync(batch, done)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64(b.N)/float64(max(l.syncs.Load(), 1)), "appends/fsync")
}

// BenchmarkAppendLatency1KiB measures one caller appending one 1 KiB
// record at a time and waiting for it (ns/op is the latency of a durable
// append), next to the disk's own cost of the same write and fsync without
// the log, so the log's overhead (goroutine hand-offs) shows.
func BenchmarkAppendLatency1KiB(b *testing.B) {
	payload := make([]byte, 1024)
	b.Run("log", func(b *testing.B) {
		l, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		batch := [][]byte{payload}
		b.ResetTimer()
		for range b.N {
			if _, err := l.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The disk alone: the same 1 KiB write and sync, straight on a file.
	fdatasync := func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
	for _, d := range []struct {
		name      string
		overwrite bool // into zeros written and synced beforehand (preallocated)
		sync      func(*os.File) error
	}{
		{"disk-append-fsync", false, (*os.File).Sync},
		{"disk-append-fdatasync", false, fdatasync},
		{"disk-overwrite-fdatasync", true, fdatasync},
	} {
		b.Run(d.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if d.overwrite {
				if _, err := f.Write(make([]byte, (b.N+1)*len(payload))); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := f.WriteAt(payload, int64(i*len(payload))); err != nil {
					b.Fatal(err)
				}
				if err := d.sync(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
