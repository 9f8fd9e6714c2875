package meta

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Trace events. A record covers Count consecutive offsets from Offset (a
// publish batch, a delivery run, an ack run) or one message:
//
//	xr/<topic>\x00<offset 8><seq 8>                       → TraceEvent
//	xk/<topic>\x00<day 4><key>\x00<time ms 8><offset 8>   → empty: business key index
//	xd/<topic>\x00<delayed id>\x00<seq 8>                  → TraceEvent of a delayed message
//
// xr/ is ordered by offset and xk/ by day, so retention deletes ranges.

// TraceEvent is one step in the life of one or more messages.
type TraceEvent struct {
	Kind    string
	Topic   string
	Offset  uint64
	Count   uint32
	Seq     uint64
	TimeMs  int64
	Group   string
	Client  string
	Addr    string
	Attempt uint32
	Reason  string
	DelayID string
}

// MaxTraceRun bounds Count, so a lookup scans a bounded key range.
const MaxTraceRun = 4096

// TraceKeyEntry indexes a message by its business key.
type TraceKeyEntry struct {
	Topic  string
	Key    string
	TimeMs int64
	Offset uint64
}

func tracePrefix(kind, topic string) []byte { return append(append([]byte(kind+"/"), topic...), 0) }

func traceKey(e TraceEvent) []byte {
	if e.Count == 0 { // events of a delayed message not yet in the log
		k := append(tracePrefix("xd", e.Topic), e.DelayID...)
		return binary.BigEndian.AppendUint64(append(k, 0), e.Seq)
	}
	k := binary.BigEndian.AppendUint64(tracePrefix("xr", e.Topic), e.Offset)
	return binary.BigEndian.AppendUint64(k, e.Seq)
}

func dayOf(ms int64) uint32 { return uint32(ms / 86_400_000) }

func traceKeyIndex(e TraceKeyEntry) []byte {
	k := binary.BigEndian.AppendUint32(tracePrefix("xk", e.Topic), dayOf(e.TimeMs))
	k = append(append(k, e.Key...), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(e.TimeMs))
	return binary.BigEndian.AppendUint64(k, e.Offset)
}

func encodeTrace(e TraceEvent) []byte {
	b := make([]byte, 0, 64)
	b = binary.AppendUvarint(b, uint64(e.Count))
	b = binary.AppendUvarint(b, uint64(e.TimeMs))
	b = binary.AppendUvarint(b, uint64(e.Attempt))
	b = binary.AppendUvarint(b, e.Offset)
	for _, s := range []string{e.Kind, e.Group, e.Client, e.Addr, e.Reason, e.DelayID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeTrace(topic string, seq uint64, v []byte) (TraceEvent, error) {
	e := TraceEvent{Topic: topic, Seq: seq}
	var nums [4]uint64
	for i := range nums {
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return e, fmt.Errorf("trace record: bad number")
		}
		nums[i], v = n, v[k:]
	}
	e.Count, e.TimeMs, e.Attempt, e.Offset = uint32(nums[0]), int64(nums[1]), uint32(nums[2]), nums[3]
	for _, dst := range []*string{&e.Kind, &e.Group, &e.Client, &e.Addr, &e.Reason, &e.DelayID} {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return e, fmt.Errorf("trace record: bad string")
		}
		*dst, v = string(v[k:k+int(n)]), v[k+int(n):]
	}
	return e, nil
}

// PutTrace writes trace events and key index entries in one unsynced
// batch: a lost tail of the trace in a crash loses no message.
func (s *Store) PutTrace(events []TraceEvent, keys []TraceKeyEntry) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range events {
		if err := b.Set(traceKey(e), encodeTrace(e), nil); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := b.Set(traceKeyIndex(k), nil, nil); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.NoSync)
}

// TraceOf returns the events that cover offset off of topic.
func (s *Store) TraceOf(topic string, off uint64) ([]TraceEvent, error) {
	p := tracePrefix("xr", topic)
	lo := uint64(0)
	if off >= MaxTraceRun {
		lo = off - MaxTraceRun + 1
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(p, lo),
		UpperBound: binary.BigEndian.AppendUint64(tracePrefix("xr", topic), off+1),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []TraceEvent
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		if len(k) != 16 {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		e, err := decodeTrace(topic, binary.BigEndian.Uint64(k[8:]), v)
		if err != nil {
			return nil, err
		}
		if e.Offset <= off && off < e.Offset+uint64(max(e.Count, 1)) {
			out = append(out, e)
		}
	}
	return out, it.Error()
}

// TraceOfDelayed returns the events of a delayed message by its id.
func (s *Store) TraceOfDelayed(topic, delayID string) ([]TraceEvent, error) {
	p := append(tracePrefix("xd", topic), delayID...)
	p = append(p, 0)
	var out []TraceEvent
	err := s.scan(p, func(k, v []byte) error {
		if len(k) != len(p)+8 {
			return nil
		}
		e, err := decodeTrace(topic, binary.BigEndian.Uint64(k[len(p):]), v)
		out = append(out, e)
		return err
	})
	return out, err
}

// TraceKeys returns offsets of a topic's messages with a business key
// published in [fromMs, toMs), oldest first, at most limit.
func (s *Store) TraceKeys(topic, key string, fromMs, toMs int64, limit int) ([]TraceKeyEntry, error) {
	var out []TraceKeyEntry
	for day := dayOf(fromMs); day <= dayOf(toMs-1) && len(out) < limit; day++ {
		p := binary.BigEndian.AppendUint32(tracePrefix("xk", topic), day)
		p = append(append(p, key...), 0)
		err := s.scan(p, func(k, _ []byte) error {
			if len(k) != len(p)+16 || len(out) >= limit {
				return nil
			}
			ts := int64(binary.BigEndian.Uint64(k[len(p):]))
			if ts >= fromMs && ts < toMs {
				out = append(out, TraceKeyEntry{Topic: topic, Key: key, TimeMs: ts, Offset: binary.BigEndian.Uint64(k[len(p)+8:])})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ExpireTrace deletes a topic's trace records of offsets below offset, key
// index days before beforeMs, and delayed-message events due before beforeMs.
func (s *Store) ExpireTrace(topic string, offset uint64, beforeMs int64) error {
	b := s.db.NewBatch()
	defer b.Close()
	xr := tracePrefix("xr", topic)
	if err := b.DeleteRange(xr, binary.BigEndian.AppendUint64(tracePrefix("xr", topic), offset), nil); err != nil {
		return err
	}
	xk := tracePrefix("xk", topic)
	if err := b.DeleteRange(xk, binary.BigEndian.AppendUint32(tracePrefix("xk", topic), dayOf(beforeMs)), nil); err != nil {
		return err
	}
	xd := tracePrefix("xd", topic)
	if err := b.DeleteRange(xd, append(tracePrefix("xd", topic), fmt.Sprintf("d%013d", beforeMs)...), nil); err != nil {
		return err
	}
	return s.commit(b, pebble.NoSync)
}
