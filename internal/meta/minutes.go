package meta

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Per-minute counters, one record per (topic, minute, server, client):
//
//	mm/<topic>\x00<minute ms 8 bytes><server>\x00<client> → produced, consumed, failures (uvarints)
//	ms/<topic>\x00<minute ms 8 bytes>                     → messages stored at the minute's end
//	mg/<topic>\x00<minute ms 8 bytes><group>              → the group's backlog and oldest unacked age at the minute's end
//
// Keys are ordered by minute inside a topic, so a time range is one scan
// and expiry is one range delete per topic.

// MinuteCount is the counters of one (topic, minute, server, client).
type MinuteCount struct {
	Topic    string
	MinuteMs int64
	Server   string
	Client   string
	Produced uint64
	Consumed uint64
	Failures uint64
}

func minutePrefix(kind, topic string) []byte { return append(append([]byte(kind+"/"), topic...), 0) }

func minuteKey(c MinuteCount) []byte {
	k := binary.BigEndian.AppendUint64(minutePrefix("mm", c.Topic), uint64(c.MinuteMs))
	k = append(append(k, c.Server...), 0)
	return append(k, c.Client...)
}

// GroupMinute is a group's state at the end of a minute.
type GroupMinute struct {
	Topic, Group string
	MinuteMs     int64
	Backlog      uint64
	// OldestUnackedAgeMs is how long the oldest unacked message had waited.
	OldestUnackedAgeMs int64
}

// AddMinuteCounts adds counts to the stored ones (a merge per record), and
// sets the stored totals and group states at the end of minuteMs.
func (s *Store) AddMinuteCounts(counts []MinuteCount, stored map[string]uint64, groups []GroupMinute, minuteMs int64) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, c := range counts {
		// Three int64 adds in one value: produced, consumed, failures.
		v := make([]byte, 0, 24)
		v = binary.BigEndian.AppendUint64(v, c.Produced)
		v = binary.BigEndian.AppendUint64(v, c.Consumed)
		v = binary.BigEndian.AppendUint64(v, c.Failures)
		if err := b.Merge(minuteKey(c), v, nil); err != nil {
			return err
		}
	}
	for topic, n := range stored {
		k := binary.BigEndian.AppendUint64(minutePrefix("ms", topic), uint64(minuteMs))
		if err := b.Set(k, binary.BigEndian.AppendUint64(nil, n), nil); err != nil {
			return err
		}
	}
	for _, g := range groups {
		k := binary.BigEndian.AppendUint64(minutePrefix("mg", g.Topic), uint64(minuteMs))
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), g.Backlog)
		v = binary.BigEndian.AppendUint64(v, uint64(g.OldestUnackedAgeMs))
		if err := b.Set(append(k, g.Group...), v, nil); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.NoSync)
}

// ScanGroupMinutes calls fn with each group state recorded at the end of a
// minute in [fromMs, toMs), in minute order.
func (s *Store) ScanGroupMinutes(topic string, fromMs, toMs int64, fn func(GroupMinute)) error {
	p := minutePrefix("mg", topic)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(p, uint64(fromMs)),
		UpperBound: binary.BigEndian.AppendUint64(minutePrefix("mg", topic), uint64(toMs)),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(k) < 8 || len(v) != 16 {
			return fmt.Errorf("group minute record %q: malformed", it.Key())
		}
		fn(GroupMinute{Topic: topic, Group: string(k[8:]), MinuteMs: int64(binary.BigEndian.Uint64(k)),
			Backlog: binary.BigEndian.Uint64(v), OldestUnackedAgeMs: int64(binary.BigEndian.Uint64(v[8:]))})
	}
	return it.Error()
}

// ScanMinuteCounts calls fn for a topic's counters with minutes in
// [fromMs, toMs), in minute order.
func (s *Store) ScanMinuteCounts(topic string, fromMs, toMs int64, fn func(MinuteCount)) error {
	p := minutePrefix("mm", topic)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(p, uint64(fromMs)),
		UpperBound: binary.BigEndian.AppendUint64(minutePrefix("mm", topic), uint64(toMs)),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		if len(k) < 9 {
			return fmt.Errorf("minute key %q: too short", it.Key())
		}
		c := MinuteCount{Topic: topic, MinuteMs: int64(binary.BigEndian.Uint64(k))}
		rest := k[8:]
		for i, b := range rest {
			if b == 0 {
				c.Server, c.Client = string(rest[:i]), string(rest[i+1:])
				break
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) != 24 {
			return fmt.Errorf("minute record %q: %d bytes", it.Key(), len(v))
		}
		c.Produced, c.Consumed, c.Failures = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:])
		fn(c)
	}
	return it.Error()
}

// ScanStoredByMinute calls fn with the stored-message count recorded at
// the end of each minute in [fromMs, toMs).
func (s *Store) ScanStoredByMinute(topic string, fromMs, toMs int64, fn func(minuteMs int64, stored uint64)) error {
	p := minutePrefix("ms", topic)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(p, uint64(fromMs)),
		UpperBound: binary.BigEndian.AppendUint64(minutePrefix("ms", topic), uint64(toMs)),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) == 8 && len(it.Key()) == len(p)+8 {
			fn(int64(binary.BigEndian.Uint64(it.Key()[len(p):])), binary.BigEndian.Uint64(v))
		}
	}
	return it.Error()
}

// ExpireMinutes deletes a topic's per-minute records before beforeMs.
func (s *Store) ExpireMinutes(topic string, beforeMs int64) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, kind := range []string{"mm", "ms", "mg"} {
		p := minutePrefix(kind, topic)
		if err := b.DeleteRange(p, binary.BigEndian.AppendUint64(minutePrefix(kind, topic), uint64(beforeMs)), nil); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.NoSync)
}
