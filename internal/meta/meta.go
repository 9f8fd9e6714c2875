// Package meta keeps the broker's looked-up state in an embedded Pebble
// store: topics, groups, each consumer position (its ack floor and the acks
// above it), the failures of unacked messages, and dead letters.
//
// Key layout (names cannot contain a NUL byte, so NUL separates them; <off>
// is an offset as 8 bytes big-endian):
//
//	t/<topic>                                → Topic as JSON
//	g/<topic>\x00<group>                     → Group as JSON
//	c/<topic>\x00<group>\x00<member>         → ack floor, 8 bytes big-endian
//	a/<topic>\x00<group>\x00<member>\x00<off> → empty: offset off (≥ floor) is acked
//	f/<topic>\x00<group>\x00<member>\x00<off> → Failure: deliveries so far, last reason
//	q/<topic>\x00<group>\x00<off><member>    → DeadLetter as JSON
//	dt/, dc/                                 → delayed messages (see delay.go)
//
// Topic and group changes are written with fsync. Cursor changes are written
// without: losing the last few acks in a crash only causes a redelivery,
// which the at-least-once contract allows, and they still survive a killed
// process because Pebble's write-ahead log is written on every commit.
package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNotFound is returned when a requested record does not exist.
var ErrNotFound = errors.New("meta: not found")

// Topic is the stored description of a topic.
type Topic struct {
	Name        string `json:"name"`
	Department  string `json:"department,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Purpose     string `json:"purpose,omitempty"`
	CreatedAtMs int64  `json:"created_at_ms"`
	// DedupeWindowMs is how long client message ids are remembered.
	DedupeWindowMs int64 `json:"dedupe_window_ms,omitempty"`
	// Registry: approval status ("" for topics from before it: approved),
	// who asked, and the last decision.
	Status         string `json:"status,omitempty"`
	RequestedBy    string `json:"requested_by,omitempty"`
	DecidedBy      string `json:"decided_by,omitempty"`
	DecidedAtMs    int64  `json:"decided_at_ms,omitempty"`
	DecisionReason string `json:"decision_reason,omitempty"`
}

// Group is the stored description of a consumer group.
type Group struct {
	Topic          string  `json:"topic"`
	Name           string  `json:"name"`
	Mode           string  `json:"mode"`     // "cluster" or "broadcast"
	AckMode        string  `json:"ack_mode"` // "business" or "auto"
	AckTimeoutMs   int64   `json:"ack_timeout_ms"`
	CreatedAtMs    int64   `json:"created_at_ms"`
	StartOffset    uint64  `json:"start_offset"`
	RetryBackoffMs []int64 `json:"retry_backoff_ms,omitempty"`
	MaxAttempts    uint32  `json:"max_attempts,omitempty"`
}

// Cursor is the durable position of one consumer of a group: every offset
// below Floor is acked, and so is every offset listed in Acked.
type Cursor struct {
	Member string
	Floor  uint64
	Acked  []uint64
	// Failures of unacked messages, by offset.
	Failures map[uint64]Failure
	// Redriven lists dead letters handed back to this member for delivery.
	Redriven []uint64
}

// Failure records how often an unacked message was delivered and why its
// last delivery failed.
type Failure struct {
	Attempts uint32
	Reason   string
}

// Store is the Pebble-backed metadata store. It is safe for concurrent use.
type Store struct {
	db *pebble.DB
	// repl, when set, carries writes to a cluster's replicas (replicate.go);
	// applied is the last replicated write applied here.
	repl    atomic.Pointer[Replicator]
	applied atomic.Uint64
	// onAuth is called after a replicated write to auth's keys (auth.go).
	onAuth atomic.Pointer[func()]
	// noWAL is set for a replica's store (OpenReplica): Pebble writes no log.
	noWAL bool
}

// Open opens (or creates) the store in dir on fs (nil: the operating
// system's file system).
func Open(dir string, logger *slog.Logger, fs vfs.FS) (*Store, error) {
	return open(dir, logger, fs, false)
}

// OpenReplica opens the store of a cluster node's replica, which Pebble keeps without
// a write-ahead log: every write to it is applied from the Raft log, the durable copy,
// and is replayed from there after a crash (writes carry their log index, see
// ApplyReplicated); Sync and Checkpoint flush the memory table to disk instead. Pebble
// panics when its write-ahead log meets a full disk (commitWrite), which ended a node
// whose disk filled; without a log, a full disk only holds its flushes back, and the
// writes wait once the memory tables are full, until space is freed.
func OpenReplica(dir string, logger *slog.Logger, fs vfs.FS) (*Store, error) {
	return open(dir, logger, fs, true)
}

func open(dir string, logger *slog.Logger, fs vfs.FS, noWAL bool) (*Store, error) {
	opts := &pebble.Options{Logger: pebbleLogger{logger}, Merger: counterMerger, FS: fs, DisableWAL: noWAL}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", dir, err)
	}
	s := &Store{db: db, noWAL: noWAL}
	if err := s.loadApplied(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open metadata store %s: %w", dir, err)
	}
	return s, nil
}

// Close flushes and closes the store.
func (s *Store) Close() error {
	if err := s.db.Flush(); err != nil {
		s.db.Close()
		return err
	}
	return s.db.Close()
}

func topicKey(topic string) []byte { return append([]byte("t/"), topic...) }

func groupPrefix(topic string) []byte { return append(append([]byte("g/"), topic...), 0) }

func groupKey(topic, group string) []byte { return append(groupPrefix(topic), group...) }

func cursorPrefix(topic, group string) []byte {
	return append(append(append(append([]byte("c/"), topic...), 0), group...), 0)
}

func cursorKey(topic, group, member string) []byte {
	return append(cursorPrefix(topic, group), member...)
}

func ackMemberPrefix(topic, group, member string) []byte {
	k := append([]byte("a/"), topic...)
	k = append(append(k, 0), group...)
	return append(append(append(k, 0), member...), 0)
}

func ackKey(topic, group, member string, off uint64) []byte {
	return binary.BigEndian.AppendUint64(ackMemberPrefix(topic, group, member), off)
}

func failurePrefix(topic, group, member string) []byte {
	p := ackMemberPrefix(topic, group, member)
	p[0] = 'f'
	return p
}

func failureKey(topic, group, member string, off uint64) []byte {
	return binary.BigEndian.AppendUint64(failurePrefix(topic, group, member), off)
}

// groupScoped returns the prefix of kind's keys for one group ("a", "f", "q").
func groupScoped(kind, topic, group string) []byte {
	k := append([]byte(kind+"/"), topic...)
	return append(append(append(k, 0), group...), 0)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// PutTopic creates or replaces a topic record, durably.
func (s *Store) PutTopic(t Topic) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.set(topicKey(t.Name), v, pebble.Sync)
}

// Topics returns every topic record, sorted by name.
func (s *Store) Topics() ([]Topic, error) {
	var out []Topic
	err := s.scan([]byte("t/"), func(_, v []byte) error {
		var t Topic
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("decode topic record: %w", err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// DeleteTopic removes a topic with its groups and cursors, durably.
func (s *Store) DeleteTopic(topic string) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range [][]byte{
		groupPrefix(topic),
		append(append([]byte("c/"), topic...), 0),
		append(append([]byte("a/"), topic...), 0),
		append(append([]byte("f/"), topic...), 0),
		append(append([]byte("q/"), topic...), 0),
		delayPrefix(topic),
		minutePrefix("mm", topic),
		minutePrefix("ms", topic),
		minutePrefix("mg", topic),
		tracePrefix("xr", topic),
		tracePrefix("xk", topic),
		tracePrefix("xd", topic),
	} {
		if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
			return err
		}
	}
	// The topic key itself has no separator after the name (a range over it
	// would also cover t/<topic>.more), so it is deleted exactly.
	if err := b.Delete(topicKey(topic), nil); err != nil {
		return err
	}
	if err := b.Delete(delayCountKey(topic), nil); err != nil {
		return err
	}
	return s.commit(b, pebble.Sync)
}

// DeleteGroup removes a group with its cursors, acks, failures and dead letters,
// durably, in one batch.
func (s *Store) DeleteGroup(topic, group string) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range [][]byte{
		cursorPrefix(topic, group),
		groupScoped("a", topic, group),
		groupScoped("f", topic, group),
		groupScoped("q", topic, group),
	} {
		if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
			return err
		}
	}
	// The group key has no separator after the name: deleted exactly.
	if err := b.Delete(groupKey(topic, group), nil); err != nil {
		return err
	}
	return s.commit(b, pebble.Sync)
}

// PutGroup creates or replaces a group record, durably, together with the
// initial cursors of its members (for a cluster group, the single member "").
func (s *Store) PutGroup(g Group, initial []Cursor) error {
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(groupKey(g.Topic, g.Name), v, nil); err != nil {
		return err
	}
	for _, c := range initial {
		if err := b.Set(cursorKey(g.Topic, g.Name, c.Member), binary.BigEndian.AppendUint64(nil, c.Floor), nil); err != nil {
			return err
		}
	}
	return s.commit(b, pebble.Sync)
}

// Groups returns the groups of a topic, sorted by name.
func (s *Store) Groups(topic string) ([]Group, error) {
	var out []Group
	err := s.scan(groupPrefix(topic), func(_, v []byte) error {
		var g Group
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("decode group record: %w", err)
		}
		out = append(out, g)
		return nil
	})
	return out, err
}

// Cursors returns the stored cursors of every member of a group.
func (s *Store) Cursors(topic, group string) ([]Cursor, error) {
	var out []Cursor
	prefix := cursorPrefix(topic, group)
	err := s.scan(prefix, func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("cursor %q: value of %d bytes, want 8", k, len(v))
		}
		c := Cursor{Member: string(k[len(prefix):]), Floor: binary.BigEndian.Uint64(v)}
		ap := ackMemberPrefix(topic, group, c.Member)
		if err := s.scan(ap, func(k, _ []byte) error {
			if len(k) != len(ap)+8 {
				return fmt.Errorf("ack key %q: bad length", k)
			}
			c.Acked = append(c.Acked, binary.BigEndian.Uint64(k[len(ap):]))
			return nil
		}); err != nil {
			return err
		}
		fp := failurePrefix(topic, group, c.Member)
		if err := s.scan(fp, func(k, v []byte) error {
			if len(k) != len(fp)+8 {
				return fmt.Errorf("failure key %q: bad length", k)
			}
			f, err := decodeFailure(v)
			if err != nil {
				return fmt.Errorf("failure record %q: %w", k, err)
			}
			if c.Failures == nil {
				c.Failures = make(map[uint64]Failure)
			}
			c.Failures[binary.BigEndian.Uint64(k[len(fp):])] = f
			return nil
		}); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// PutCursor stores a new member's cursor durably.
func (s *Store) PutCursor(topic, group string, c Cursor) error {
	return s.set(cursorKey(topic, group, c.Member), binary.BigEndian.AppendUint64(nil, c.Floor), pebble.Sync)
}

// CursorUpdate is a change to one member's cursor.
type CursorUpdate struct {
	Member   string
	OldFloor uint64
	NewFloor uint64
	// Acked lists offsets at or above NewFloor that became acked.
	Acked []uint64
	// Failures sets the failure record of offsets; ClearFailures deletes them.
	Failures      map[uint64]Failure
	ClearFailures []uint64
	// DeadLetters are stored (or overwritten); FinishedDeadLetters are
	// redriven dead letters that were acked, to delete.
	DeadLetters         []DeadLetter
	FinishedDeadLetters []uint64
	// Dropped lists stored acks the floor has passed; they are deleted.
	// (Point deletes, not a range: Pebble handles many small range
	// tombstones over the same keys badly.)
	Dropped []uint64
}

// SaveCursors applies cursor updates of one group in a single unsynced batch.
func (s *Store) SaveCursors(topic, group string, updates []CursorUpdate) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, u := range updates {
		for _, off := range u.Acked {
			if err := b.Set(ackKey(topic, group, u.Member, off), nil, nil); err != nil {
				return err
			}
		}
		for _, off := range u.Dropped {
			if err := b.Delete(ackKey(topic, group, u.Member, off), nil); err != nil {
				return err
			}
		}
		if u.NewFloor != u.OldFloor {
			if err := b.Set(cursorKey(topic, group, u.Member), binary.BigEndian.AppendUint64(nil, u.NewFloor), nil); err != nil {
				return err
			}
		}
		for off, f := range u.Failures {
			if err := b.Set(failureKey(topic, group, u.Member, off), encodeFailure(f), nil); err != nil {
				return err
			}
		}
		for _, off := range u.ClearFailures {
			if err := b.Delete(failureKey(topic, group, u.Member, off), nil); err != nil {
				return err
			}
		}
		for _, dl := range u.DeadLetters {
			dl.Member = u.Member
			if err := putDeadLetter(b, topic, group, dl); err != nil {
				return err
			}
		}
		for _, off := range u.FinishedDeadLetters {
			if err := b.Delete(deadLetterKey(topic, group, off, u.Member), nil); err != nil {
				return err
			}
		}
	}
	return s.commit(b, pebble.NoSync)
}

// scan calls fn for every key with the given prefix, in key order.
func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// pebbleLogger routes Pebble's log lines to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l != nil {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	if p.l != nil {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	if p.l != nil {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
	panic(fmt.Sprintf(format, args...))
}
