package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/dmqio/dmq/internal/seglog"
)

// A segment file written slowly gets durable zeros ahead of its writer, never over what
// the writer wrote, and stops growing them at the file's size.
func TestLogSegmentsAreZeroFilledAheadOfTheWriter(t *testing.T) {
	dir := t.TempDir()
	const size = 256 << 10
	f, err := preallocVFS{walVFS{vfs.Default}}.Create(dir, "seg", size)
	if err != nil {
		t.Fatal(err)
	}
	z, ok := f.(*zeroedFile)
	if !ok {
		t.Fatalf("Create = %T, want a zero-filled file", f)
	}
	filledTo := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			z.mu.Lock()
			filled, filling := z.filled, z.filling
			z.mu.Unlock()
			if filled >= want && !filling {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("zeros filled up to %d, want %d", filled, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var want []byte
	for off := 0; off < size; off += 1000 {
		rec := bytes.Repeat([]byte{byte(off/1000) | 1}, min(1000, size-off))
		if _, err := f.WriteAt(rec, int64(off)); err != nil {
			t.Fatal(err)
		}
		want = append(want, rec...)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if off == 0 {
			filledTo(1000 + seglog.MinPrealloc)
		}
	}
	filledTo(size)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || !bytes.Equal(got, want) {
		t.Fatalf("the file holds %d bytes, want the %d written: zeros written over records", len(got), size)
	}
	if v, ok := logVFS(vfs.Default, false).(preallocVFS); !ok {
		t.Errorf("logVFS = %T, want the zero-filling file system", v)
	}
}

// What the log writes with zeros ahead reads back without the zero filling: the zeros
// are where a preallocated file reads as zeros, or ends.
func TestZeroFilledLogReadsBackWithoutIt(t *testing.T) {
	dir := t.TempDir()
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, int(i)*37)}
	}
	s, err := openLogStore(dir, 64<<10, vfs.Default, false, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	const n = 200 // several segments
	for i := uint64(1); i <= n; i++ {
		if err := s.StoreLogs([]*raft.Log{entry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openWAL(dir, 64<<10, vfs.Default, walVFS{vfs.Default}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= n; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
			t.Fatalf("entry %d read back without zero filling: %v", i, err)
		}
	}
	if err := s.StoreLogs([]*raft.Log{entry(n + 1)}); err != nil {
		t.Fatalf("append after reopening: %v", err)
	}
}
