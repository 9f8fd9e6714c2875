package seglog

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecovery writes arbitrary bytes as the only (active) segment and
// checks that Open recovers without panicking, keeps exactly a valid
// prefix of records, and that the log works afterwards.
func FuzzRecovery(f *testing.F) {
	var valid []byte
	for i := range uint64(20) {
		valid = appendRecord(valid, i, payloadFor(i))
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(bytes.Clone(valid), make([]byte, 100)...))
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 1
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(0))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir, IndexIntervalBytes: 64})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer l.Close()
		// What is kept must be a prefix of data made of valid records.
		kept := l.Size()
		if kept > int64(len(data)) || (kept < int64(len(data))) != (l.Recovery().DroppedBytes > 0) {
			t.Fatalf("kept %d of %d bytes, Recovery %+v", kept, len(data), l.Recovery())
		}
		var pos int64
		for off := l.First(); off < l.Next(); off++ {
			p, err := l.Read(off)
			if err != nil {
				t.Fatalf("Read(%d) of a recovered record: %v", off, err)
			}
			rec := appendRecord(nil, off, p)
			if !bytes.Equal(rec, data[pos:pos+int64(len(rec))]) {
				t.Fatalf("record %d does not match the file at %d", off, pos)
			}
			pos += int64(len(rec))
		}
		if pos != kept {
			t.Fatalf("records cover %d bytes, Size() = %d", pos, kept)
		}
		next := l.Next()
		first, err := l.Append(context.Background(), [][]byte{[]byte("after")})
		if err != nil || first != next {
			t.Fatalf("Append after recovery = %d, %v", first, err)
		}
		if p, err := l.Read(first); err != nil || string(p) != "after" {
			t.Fatalf("Read(%d) = %q, %v", first, p, err)
		}
	})
}
