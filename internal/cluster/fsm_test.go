package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// listFSM is the test state machine: an append-only list of entries and a running checksum
// over them, so two replicas agree only if they applied the same entries in the same order.
type listFSM struct {
	mu struct {
		sync.Mutex
		entries []string
		sum     uint32
	}
	restores atomic.Int64 // Restore calls: proves a catch-up came from a snapshot
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.entries = append(f.mu.entries, string(l.Data))
	f.mu.sum = crc32.Update(f.mu.sum, crc32.IEEETable, l.Data)
	return len(f.mu.entries) // the entry's 1-based position, returned to Group.Apply
}

func (f *listFSM) state() ([]string, uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.mu.entries), f.mu.sum
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnapshot{entries: slices.Clone(f.mu.entries), sum: f.mu.sum}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReader(rc)
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("listFSM: snapshot header: %w", err)
	}
	n, wantSum := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
	entries := make([]string, 0, n)
	var sum uint32
	for range n {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return fmt.Errorf("listFSM: snapshot entry: %w", err)
		}
		b := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("listFSM: snapshot entry: %w", err)
		}
		sum = crc32.Update(sum, crc32.IEEETable, b)
		entries = append(entries, string(b))
	}
	if sum != wantSum {
		return fmt.Errorf("listFSM: snapshot checksum %08x, computed %08x", wantSum, sum)
	}
	f.mu.Lock()
	f.mu.entries, f.mu.sum = entries, sum
	f.mu.Unlock()
	f.restores.Add(1)
	return nil
}

type listSnapshot struct {
	entries []string
	sum     uint32
}

func (s *listSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(s.entries)))
	binary.BigEndian.PutUint32(hdr[4:], s.sum)
	w.Write(hdr[:])
	for _, e := range s.entries {
		w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(e))))
		w.WriteString(e)
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnapshot) Release() {}
