package boltstore

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func entry(i uint64) *raft.Log {
	return &raft.Log{
		Index: i, Term: i/3 + 1, Type: raft.LogCommand,
		Data:       []byte{byte(i), 'x'},
		Extensions: []byte("ext"),
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func equalLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func checkRange(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil || f != first {
		t.Fatalf("FirstIndex() = %d, %v; want %d", f, err, first)
	}
	l, err := s.LastIndex()
	if err != nil || l != last {
		t.Fatalf("LastIndex() = %d, %v; want %d", l, err, last)
	}
}

func TestLogStoreRoundTripDeleteAndReopen(t *testing.T) {
	s, path := openTemp(t)
	checkRange(t, s, 0, 0)
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, entry(i))
	}
	if err := s.StoreLogs(logs[:9]); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	if err := s.StoreLog(logs[9]); err != nil {
		t.Fatalf("StoreLog: %v", err)
	}
	checkRange(t, s, 1, 10)
	for _, want := range logs {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", want.Index, err)
		}
		if !equalLog(&got, want) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
		}
	}
	var l raft.Log
	if err := s.GetLog(11, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(11) = %v, want raft.ErrLogNotFound", err)
	}
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatalf("DeleteRange(1, 4): %v", err)
	}
	checkRange(t, s, 5, 10)
	if err := s.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(4) after delete = %v, want raft.ErrLogNotFound", err)
	}
	if err := s.DeleteRange(9, 20); err != nil {
		t.Fatalf("DeleteRange(9, 20): %v", err)
	}
	checkRange(t, s, 5, 8)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	checkRange(t, s2, 5, 8)
	if err := s2.GetLog(7, &l); err != nil || !equalLog(&l, logs[6]) {
		t.Fatalf("GetLog(7) after reopen = %+v, %v; want %+v", l, err, *logs[6])
	}
}

func TestStableStore(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) error = %v, want text \"not found\" (raft compares it)", err)
	}
	if _, err := s.GetUint64([]byte("n")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) error = %v, want text \"not found\"", err)
	}
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get(k) = %q, %v; want v", v, err)
	}
	if err := s.SetUint64([]byte("n"), 42); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("n")); err != nil || v != 42 {
		t.Fatalf("GetUint64(n) = %d, %v; want 42", v, err)
	}
	if _, err := s.GetUint64([]byte("k")); err == nil {
		t.Fatalf("GetUint64 of a 1-byte value succeeded, want an error")
	}
}

func TestSecondOpenRefused(t *testing.T) {
	_, path := openTemp(t)
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatalf("second Open(%s) succeeded while the first is open", path)
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	b := encodeLog(entry(3))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"truncated", b[:len(b)-1]},
		{"trailing", append(append([]byte(nil), b...), 0)},
		{"version", append([]byte{9}, b[1:]...)},
		{"short", b[:10]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(tc.b, &l); err == nil {
				t.Fatalf("decodeLog(%s) succeeded", tc.name)
			}
		})
	}
}
