package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// A committed entry this replica cannot apply because its disk failed it (full, or an
// I/O error) is not skipped: skipping it would make this replica differ from the others
// for good, and on the leader answer "not stored" for an entry the others stored. The
// replica stalls instead: it retries the entry, with a growing pause, until it applies
// (space was freed) or the store is interrupted (the node stops; the entry is applied
// again after the restart, as every entry after the last snapshot is). While it stalls,
// the group's log still grows on the replicas that can write, Stalled reports the
// cause (health, status), and a leader refuses new publishes (Store.refuse).

// A leader whose replica stalls cannot tell its publishers the outcome of what it
// proposed: committed entries wait for its own apply, which waits for the disk. It
// abandons them once another node leads, or after abandonAfter if none does (a single
// node has nobody to hand its leadership to, and its publishers waited for as long as
// the disk stayed full): each waiting publish is answered "outcome unknown", and the
// client sends it again with its client message id, to the new leader, or to this node
// once its disk has room; the duplicate window knows it if it was stored. Waiting for
// the new leader first lets most of them be acknowledged there as duplicates.

// pendingCtx is the context the proposals made now are waited for with.
func (s *Store) pendingCtx() context.Context {
	s.pending.Lock()
	defer s.pending.Unlock()
	if s.pending.ctx == nil {
		s.pending.ctx, s.pending.cancel = context.WithCancel(context.Background())
	}
	return s.pending.ctx
}

// abandonPending ends the waits for every proposal made so far.
func (s *Store) abandonPending() {
	s.pending.Lock()
	defer s.pending.Unlock()
	if s.pending.cancel != nil {
		s.pending.cancel()
		s.pending.ctx, s.pending.cancel = nil, nil
	}
}

const (
	// maxStallPause is the longest pause between two attempts at a stalled entry.
	maxStallPause = time.Second
	// abandonAfter is how long a stalled leader's publishers wait before they are
	// answered "outcome unknown" while no other node took over.
	abandonAfter = 3 * time.Second
)

// stallError is an entry's failure caused by this replica's disk, not by the entry:
// another attempt may succeed.
type stallError struct{ err error }

func (e *stallError) Error() string { return e.err.Error() }
func (e *stallError) Unwrap() error { return e.err }

// isStall reports whether an Apply result is a stallError.
func isStall(res any) bool {
	err, ok := res.(error)
	var se *stallError
	return ok && errors.As(err, &se)
}

// stall is the entry a replica is stalled on.
type stall struct {
	index uint64
	err   error
	since time.Time
}

// Stalled returns why this replica stopped applying, or nil while it applies.
func (s *Store) Stalled() error {
	if st := s.stalled.Load(); st != nil {
		return fmt.Errorf("replica stalled at entry %d since %s: %w", st.index, st.since.Format(time.RFC3339), st.err)
	}
	return nil
}

// Interrupt ends the retries of a stalled entry, so that Raft can shut down; the
// replica applies nothing more. Safe to call twice.
func (s *Store) Interrupt() { s.interruptOnce.Do(func() { close(s.interrupted) }) }

// applyUntilDone applies e, and again while its failure is the disk's, until it applies
// or the store is interrupted (then the stallError is returned).
func (s *Store) applyUntilDone(e *raft.Log) any {
	pause := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.recoverLogFor(e)
		}
		res := s.Apply(e)
		if !isStall(res) {
			if st := s.stalled.Swap(nil); st != nil {
				s.logger.Info("replica: applying again after a stall", "index", st.index, "stalled_for", time.Since(st.since).Round(time.Millisecond))
			}
			return res
		}
		err := res.(error)
		if st := s.stalled.Load(); st == nil || st.index != e.Index {
			s.stalled.Store(&stall{index: e.Index, err: err, since: time.Now()})
			s.logger.Error("replica: a committed entry cannot be written here; this replica stops applying and retries until it can (free disk space)",
				"index", e.Index, "err", err)
		}
		if time.Since(s.stalled.Load().since) >= abandonAfter || s.group != nil && !s.group.IsLeader() {
			s.abandonPending()
		}
		select {
		case <-s.interrupted:
			return res
		case <-time.After(pause):
		}
		pause = min(2*pause, maxStallPause)
	}
}

// recoverLogFor brings back the topic log of an append entry after a failed write: a
// seglog log refuses every append after a failure until it is recovered.
func (s *Store) recoverLogFor(e *raft.Log) {
	c, err := decodeCommand(e.Data)
	if err != nil || c.kind != kindAppend {
		return
	}
	s.mu.Lock()
	l := s.mu.logs[c.topic]
	s.mu.Unlock()
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Recover(ctx); err != nil {
		s.logger.Debug("replica: topic log not recovered yet", "topic", c.topic, "err", err)
	}
}
