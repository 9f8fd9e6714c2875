package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
)

// The broker's Storage on the leader: reads go to the local replica, changes become
// proposals to the group and return once the local replica applied them.

// Meta is the metadata store; its writes are proposed to the group.
func (s *Store) Meta() *meta.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.meta
}

// ErrClosed is returned by ReadMeta once the store is closed (or a restored snapshot
// could not be opened).
var ErrClosed = errors.New("replica: store closed")

// ReadMeta runs f with the metadata store, which a snapshot being installed does not
// replace while f runs (a caller on a follower that reads Meta() directly may find it
// closed, or nil, during an install). f must only read: a proposal waits for the apply
// path, which may be waiting for f to return.
func (s *Store) ReadMeta(f func(*meta.Store) error) error {
	s.state.RLock()
	defer s.state.RUnlock()
	ms := s.Meta()
	if ms == nil {
		return ErrClosed
	}
	return f(ms)
}

// OpenLog returns the topic's log, opening it on this replica if needed (the others
// open it when the first append reaches them).
func (s *Store) OpenLog(topic string, _ seglog.Options) (*seglog.Log, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openLogLocked(topic)
}

// refuse returns why a new publish must not enter the log: this replica cannot apply
// (a stalled entry: the publish would wait for the disk), or the disk's free space is
// below the reserve. A refusal is an answer of "not stored", true since nothing was
// proposed; it matches syscall.ENOSPC when the disk is full, so that the client gets
// ResourceExhausted as from a single broker.
func (s *Store) refuse() error {
	if err := s.Stalled(); err != nil {
		return fmt.Errorf("this node cannot write its replica, so it does not take publishes: %w", err)
	}
	return s.space.check()
}

// DiskFree returns the free and total bytes of the data directory's file system, and
// the reserve below which publishes are refused.
func (s *Store) DiskFree() (free, total, reserve int64, err error) {
	free, total, err = s.space.read()
	return free, total, s.space.Reserve(), err
}

// proposer reserves a topic's offsets in the order its appends enter the Raft log, and
// reports their outcomes in that order too.
type proposer struct {
	topic    string
	mu       sync.Mutex
	next     uint64 // offset the next proposal gets
	inflight int
	// waiting holds the appends proposed and not yet reported, oldest first; one
	// goroutine (while reporting is set) waits for each in turn. A goroutine per
	// proposal woke in any order, so a batch could be reported before the one
	// proposed before it: the broker's duplicate window then kept their ids one by
	// one instead of as runs.
	waiting   []pendingAppend
	reporting bool
}

// errAbandoned answers a publish whose proposal the replica abandoned (stall.go).
var errAbandoned = fmt.Errorf("%w: this node's replica stopped applying (its disk is full or failing); send it again with the same client message id", cluster.ErrOutcomeUnknown)

// pendingAppend is an append proposed to the group, waiting for its outcome.
type pendingAppend struct {
	prop *cluster.Proposal
	ctx  context.Context // ended when the replica abandons its proposals (stall.go)
	base uint64
	done func(uint64, error)
}

func (s *Store) proposer(topic string) *proposer {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.mu.proposers[topic]
	if p == nil {
		p = &proposer{topic: topic}
		s.mu.proposers[topic] = p
	}
	return p
}

// Append proposes an append of payloads and calls done once the group committed it and
// this replica applied it (a quorum has it durably), with the offset of the first.
func (s *Store) Append(topic string, l *seglog.Log, payloads [][]byte, done func(uint64, error)) {
	s.appendInTerm(0, topic, l, payloads, done)
}

// appendInTerm is Append valid only if committed in term (0: any).
func (s *Store) appendInTerm(term uint64, topic string, l *seglog.Log, payloads [][]byte, done func(uint64, error)) {
	if len(payloads) == 0 {
		done(l.Next(), nil)
		return
	}
	if err := s.refuse(); err != nil {
		done(0, err)
		return
	}
	p := s.proposer(topic)
	p.mu.Lock()
	if p.inflight == 0 {
		// Nothing pending: the log's end is exact (and corrects a reservation made
		// past an entry that failed).
		p.next = l.Next()
	}
	base := p.next
	p.next += uint64(len(payloads))
	p.inflight++
	prop := s.group.Propose(encodeAppendInTerm(term, topic, base, payloads))
	p.waiting = append(p.waiting, pendingAppend{prop: prop, ctx: s.pendingCtx(), base: base, done: done})
	start := !p.reporting
	p.reporting = true
	p.mu.Unlock()
	if start {
		go p.report()
	}
}

// report waits for the topic's proposed appends in the order they were proposed (the
// order the group applies them in) and reports each, until none is left.
func (p *proposer) report() {
	for {
		p.mu.Lock()
		if len(p.waiting) == 0 {
			p.reporting = false
			p.waiting = nil // let a long queue's array go
			p.mu.Unlock()
			return
		}
		a := p.waiting[0]
		p.waiting[0] = pendingAppend{}
		p.waiting = p.waiting[1:]
		p.mu.Unlock()

		resp, err := a.prop.Wait(a.ctx)
		if err != nil && a.ctx.Err() != nil {
			err = errAbandoned // not the context's error: the client must send it again
		}
		p.mu.Lock()
		p.inflight--
		p.mu.Unlock()
		if err != nil {
			a.done(0, err)
			continue
		}
		first, ok := resp.(uint64)
		if !ok || first != a.base {
			a.done(0, fmt.Errorf("replica: append to %q answered %v, want offset %d", p.topic, resp, a.base))
			continue
		}
		a.done(first, nil)
	}
}

// DeleteSegmentsBefore proposes retention of a topic's segments wholly before off.
func (s *Store) DeleteSegmentsBefore(topic string, _ *seglog.Log, off uint64) (int, error) {
	resp, err := s.group.Apply(context.Background(), encodeTrim(topic, off))
	if err != nil {
		return 0, err
	}
	n, _ := resp.(int)
	return n, nil
}

// RemoveLog proposes the removal of a topic's log.
func (s *Store) RemoveLog(topic string, _ *seglog.Log) error {
	_, err := s.group.Apply(context.Background(), encodeRemove(topic))
	return err
}

// settleTimeout bounds Settle's wait for the group to apply what was proposed before.
const settleTimeout = 5 * time.Second

// Settle returns once this replica applied every entry proposed before the call, the
// unawaited metadata writes included (a Raft barrier): a read after it sees them. With
// none of those pending, every write is applied already and there is nothing to wait
// for (a cluster's last node stopping, which has no quorum left, does not wait).
func (s *Store) Settle() error {
	if s.unawaited.Load() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	return s.group.Barrier(ctx)
}

// CloseLog does nothing: the replica keeps applying to its logs whoever leads.
func (s *Store) CloseLog(string, *seglog.Log) error { return nil }

// Storage is the store as the broker's Storage (broker.Config.Storage) while this node
// leads in term. Its Close does nothing: the replica outlives the broker.
func (s *Store) Storage(term uint64) LeaderStorage { return LeaderStorage{Store: s, term: term} }

// LeaderStorage is a Store lent to a broker for one term of leadership. Once the group
// is in another term (leadership lost, perhaps regained at once), it refuses changes:
// entries its broker was told had failed may have been committed since, unknown to the
// broker's duplicate window, and its offset reservations may lag the log. The node then
// opens a new broker, after every committed entry is applied.
type LeaderStorage struct {
	*Store
	term uint64
}

// stale reports, as an error, that the group left the storage's term.
func (l LeaderStorage) stale() error {
	if t := l.group.Term(); t != l.term {
		return fmt.Errorf("%w: the group moved from term %d to %d; the broker of term %d no longer writes", cluster.ErrNotLeader, l.term, t, l.term)
	}
	return nil
}

// Append is Store.Append while the term lasts.
func (l LeaderStorage) Append(topic string, log *seglog.Log, payloads [][]byte, done func(uint64, error)) {
	if err := l.stale(); err != nil {
		done(0, err)
		return
	}
	// The term goes with the entry too: appended by the leader in another term (the
	// leadership changed between this check and the proposal), it is refused by every
	// replica.
	l.Store.appendInTerm(l.term, topic, log, payloads, done)
}

// DeleteSegmentsBefore is Store.DeleteSegmentsBefore while the term lasts.
func (l LeaderStorage) DeleteSegmentsBefore(topic string, log *seglog.Log, off uint64) (int, error) {
	if err := l.stale(); err != nil {
		return 0, err
	}
	return l.Store.DeleteSegmentsBefore(topic, log, off)
}

// RemoveLog is Store.RemoveLog while the term lasts.
func (l LeaderStorage) RemoveLog(topic string, log *seglog.Log) error {
	if err := l.stale(); err != nil {
		return err
	}
	return l.Store.RemoveLog(topic, log)
}

// Close ends the loan once the group applied the broker's last writes (the positions
// and counters a closing broker saves are unawaited proposals): a node that stops
// gracefully, or hands its shards on, keeps its consumers' latest acks. The store stays
// open. A broker whose term ended has nothing to wait for; one that loses leadership
// while it waits loses those writes as at any failover (its consumers' last acks may
// be delivered again), which is logged, not an error of the close.
func (l LeaderStorage) Close() error {
	if l.stale() != nil {
		return nil
	}
	if err := l.Settle(); err != nil {
		l.logger.Warn("replica: the closing broker's last writes (positions, counters) may be lost", "err", err)
	}
	return nil
}

// metaReplicator proposes the metadata store's writes.
type metaReplicator struct{ s *Store }

func (r metaReplicator) Replicate(repr []byte) error {
	if r.s.group == nil {
		return errors.New("replica: no Raft group attached")
	}
	_, err := r.s.group.Apply(context.Background(), encodeMeta(repr))
	return err
}

func (r metaReplicator) ReplicateAsync(repr []byte) {
	if r.s.group == nil {
		r.s.logger.Warn("replica: metadata write dropped: no Raft group attached")
		return
	}
	r.s.unawaited.Add(1)
	prop := r.s.group.Propose(encodeMeta(repr)) // encodeMeta copies repr
	go func() {
		defer r.s.unawaited.Add(-1)
		if _, err := prop.Wait(context.Background()); err != nil {
			// Positions and counters: a lost one means a redelivery or a count short.
			r.s.logger.Warn("replica: unawaited metadata write failed", "err", err)
		}
	}()
}
