package meta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Delayed messages are stored by due time, so the next due message of a
// topic is the first key of its range: found by a seek, never a scan.
//
//	dt/<topic>\x00<due ms 8 bytes><seq 8 bytes> → the message record
//	dc/<topic>                                → pending count (merged int64)

// DelayedEntry is one pending delayed message.
type DelayedEntry struct {
	DueMs   int64
	Seq     uint64
	Payload []byte // the message record (see package message)
}

func delayPrefix(topic string) []byte { return append(append([]byte("dt/"), topic...), 0) }

func delayKey(topic string, dueMs int64, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(delayPrefix(topic), uint64(dueMs))
	return binary.BigEndian.AppendUint64(k, seq)
}

func delayCountKey(topic string) []byte { return append([]byte("dc/"), topic...) }

func int64Value(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// ScheduleDelayed stores delayed messages durably (fsync) before returning.
func (s *Store) ScheduleDelayed(topic string, es []DelayedEntry) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range es {
		if err := b.Set(delayKey(topic, e.DueMs, e.Seq), e.Payload, nil); err != nil {
			return err
		}
	}
	if err := b.Merge(delayCountKey(topic), int64Value(int64(len(es))), nil); err != nil {
		return err
	}
	return s.commit(b, pebble.Sync)
}

// NextDelayed returns when the topic's next delayed message due at or
// after fromMs is due. Callers pass the time up to which everything was
// delivered: the deletes of delivered messages stay in the LSM until a
// compaction, and a seek from the start of the range would step over all of
// them every time.
func (s *Store) NextDelayed(topic string, fromMs int64) (dueMs int64, ok bool, err error) {
	p := delayPrefix(topic)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: delayKey(topic, fromMs, 0), UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	return int64(binary.BigEndian.Uint64(it.Key()[len(p):])), true, nil
}

// ScanDelayed calls fn for the topic's delayed messages due in [fromMs,
// toMs) (toMs 0: no bound) and after (afterDue, afterSeq), soonest first,
// until fn returns false.
func (s *Store) ScanDelayed(topic string, fromMs, toMs int64, afterDue int64, afterSeq uint64, fn func(DelayedEntry) bool) error {
	p := delayPrefix(topic)
	lower := delayKey(topic, fromMs, 0)
	if after := delayKey(topic, afterDue, afterSeq+1); afterSeq != 0 || afterDue != 0 {
		if bytes.Compare(after, lower) > 0 {
			lower = after
		}
	}
	upper := prefixEnd(p)
	if toMs > 0 {
		upper = delayKey(topic, toMs, 0)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		if len(k) != 16 {
			return fmt.Errorf("delayed key %q: bad length", it.Key())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		e := DelayedEntry{DueMs: int64(binary.BigEndian.Uint64(k)), Seq: binary.BigEndian.Uint64(k[8:]), Payload: bytes.Clone(v)}
		if !fn(e) {
			break
		}
	}
	return it.Error()
}

// RemoveDelayed deletes delayed messages that were delivered, durably.
func (s *Store) RemoveDelayed(topic string, es []DelayedEntry) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range es {
		// Each key is set once and deleted once: a single delete lets
		// compactions drop both early.
		if err := b.SingleDelete(delayKey(topic, e.DueMs, e.Seq), nil); err != nil {
			return err
		}
	}
	if err := b.Merge(delayCountKey(topic), int64Value(-int64(len(es))), nil); err != nil {
		return err
	}
	return s.commit(b, pebble.Sync)
}

// CancelDelayed deletes one pending delayed message; found is false when
// there is none with that due time and sequence. The caller serializes it
// with RemoveDelayed for the same topic.
func (s *Store) CancelDelayed(topic string, dueMs int64, seq uint64) (found bool, err error) {
	k := delayKey(topic, dueMs, seq)
	_, closer, err := s.db.Get(k)
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.SingleDelete(k, nil); err != nil {
		return false, err
	}
	if err := b.Merge(delayCountKey(topic), int64Value(-1), nil); err != nil {
		return false, err
	}
	return true, s.commit(b, pebble.Sync)
}

// CountDelayed returns the number of pending delayed messages of a topic.
func (s *Store) CountDelayed(topic string) (uint64, error) {
	v, closer, err := s.db.Get(delayCountKey(topic))
	if err == pebble.ErrNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("delayed count of %q: %d bytes", topic, len(v))
	}
	return uint64(max(int64(binary.BigEndian.Uint64(v)), 0)), nil
}

// counterMerger adds int64 values: the merge operator of the dc/ counters.
var counterMerger = &pebble.Merger{
	Name: "dmq.int64add.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		m := &int64Adder{}
		return m, m.MergeNewer(value)
	},
}

// int64Adder adds values made of one or more big-endian int64s, element
// by element (the dc/ counters have one, the mm/ minute records three).
type int64Adder struct{ sum []int64 }

func (a *int64Adder) MergeNewer(v []byte) error {
	if len(v) == 0 || len(v)%8 != 0 {
		return fmt.Errorf("counter operand of %d bytes", len(v))
	}
	if a.sum == nil {
		a.sum = make([]int64, len(v)/8)
	}
	if len(a.sum) != len(v)/8 {
		return fmt.Errorf("counter operands of %d and %d values", len(a.sum), len(v)/8)
	}
	for i := range a.sum {
		a.sum[i] += int64(binary.BigEndian.Uint64(v[8*i:]))
	}
	return nil
}

func (a *int64Adder) MergeOlder(v []byte) error { return a.MergeNewer(v) }

func (a *int64Adder) Finish(bool) ([]byte, io.Closer, error) {
	out := make([]byte, 0, 8*len(a.sum))
	for _, v := range a.sum {
		out = binary.BigEndian.AppendUint64(out, uint64(v))
	}
	return out, nil, nil
}
