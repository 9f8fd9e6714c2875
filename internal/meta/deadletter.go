package meta

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// DeadLetter is a message that failed a group's max attempts, with a copy
// of the stored record so it outlives the log's retention.
type DeadLetter struct {
	Member   string `json:"member"`
	Offset   uint64 `json:"offset"`
	Attempts uint32 `json:"attempts"`
	Reason   string `json:"reason"`
	DeadAtMs int64  `json:"dead_at_ms"`
	// Redriven marks a dead letter handed back to its group: it is being
	// delivered again and is deleted once acked.
	Redriven bool `json:"redriven,omitempty"`
	// Payload is the stored message record (see package message).
	Payload []byte `json:"payload"`
}

func deadLetterKey(topic, group string, off uint64, member string) []byte {
	k := binary.BigEndian.AppendUint64(groupScoped("q", topic, group), off)
	return append(k, member...)
}

func putDeadLetter(b *pebble.Batch, topic, group string, dl DeadLetter) error {
	v, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	return b.Set(deadLetterKey(topic, group, dl.Offset, dl.Member), v, nil)
}

// PutDeadLetters stores dead letters of a group durably.
func (s *Store) PutDeadLetters(topic, group string, dls []DeadLetter) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, dl := range dls {
		if err := putDeadLetter(b, topic, group, dl); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.Sync)
}

// DeleteDeadLetters removes dead letters of a group durably.
func (s *Store) DeleteDeadLetters(topic, group string, dls []DeadLetter) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, dl := range dls {
		if err := b.Delete(deadLetterKey(topic, group, dl.Offset, dl.Member), nil); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.Sync)
}

// GetDeadLetter returns the dead letter of member at off, or ErrNotFound.
func (s *Store) GetDeadLetter(topic, group string, off uint64, member string) (DeadLetter, error) {
	v, closer, err := s.db.Get(deadLetterKey(topic, group, off, member))
	if err == pebble.ErrNotFound {
		return DeadLetter{}, ErrNotFound
	}
	if err != nil {
		return DeadLetter{}, err
	}
	defer closer.Close()
	var dl DeadLetter
	if err := json.Unmarshal(v, &dl); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter at %d: %w", off, err)
	}
	return dl, nil
}

// ScanDeadLetters calls fn for the dead letters of a group with an offset
// at or above from, oldest first, until fn returns false.
func (s *Store) ScanDeadLetters(topic, group string, from uint64, fn func(DeadLetter) bool) error {
	prefix := groupScoped("q", topic, group)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint64(prefix, from),
		UpperBound: prefixEnd(prefix),
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
		var dl DeadLetter
		if err := json.Unmarshal(v, &dl); err != nil {
			return fmt.Errorf("dead letter %q: %w", it.Key(), err)
		}
		if !fn(dl) {
			return nil
		}
	}
	return it.Error()
}

// ResetCursors moves every listed member of a group to floor, forgetting
// their acks and failures above it. Dead letters stay.
func (s *Store) ResetCursors(topic, group string, members []string, floor uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, m := range members {
		if err := b.Set(cursorKey(topic, group, m), binary.BigEndian.AppendUint64(nil, floor), nil); err != nil {
			return err
		}
		for _, p := range [][]byte{ackMemberPrefix(topic, group, m), failurePrefix(topic, group, m)} {
			if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
				return err
			}
		}
	}
	return s.commit(b, pebble.Sync)
}

func encodeFailure(f Failure) []byte {
	b := binary.AppendUvarint(nil, uint64(f.Attempts))
	return append(b, f.Reason...)
}

func decodeFailure(v []byte) (Failure, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > 1<<32-1 {
		return Failure{}, fmt.Errorf("bad attempt count")
	}
	return Failure{Attempts: uint32(n), Reason: string(v[k:])}, nil
}
