// Package replica is a broker's store on a cluster node: the topic logs and the metadata
// store of one shard, kept identical on every replica by applying the shard's Raft log
// (package cluster). It is the group's state machine on every replica and, on the leader,
// the broker's Storage: the broker reads the logs directly and every change it makes
// (a publish batch, a metadata write, retention, a topic removal) becomes a log entry
// that each replica applies.
//
// The state lives on disk, not in the snapshot: topic logs are written without fsync
// (the Raft log, fsynced on a quorum, is the durable copy) and made durable before a
// snapshot lets the Raft log go. A restart resumes from the disk and replays the log
// after the last snapshot; entries it already holds are skipped (metadata writes carry
// their log index, appends the offsets they must get). A replica too far behind for the
// log receives a snapshot: a copy of the metadata store and of the topic logs.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/dirlock"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
)

// Options configures a Store.
type Options struct {
	// DataDir holds meta/ and topics/<name>/, as a single broker's data directory does.
	DataDir string
	// Log holds the settings of every topic log (segment size, largest record); Dir, FS
	// and NoSync are set by the store.
	Log    seglog.Options
	Logger *slog.Logger
	// FS is the file system of every file of the replica (nil: the OS's); the Raft
	// group's files must be on the same one (snapshots link the replica's files).
	FS vfs.FS
	// SnapshotBytes: once the entries applied since the last snapshot add up to this
	// many bytes, Grown signals, so that the node takes a snapshot and a restart
	// replays at most about this much of the Raft log (0: never).
	SnapshotBytes int64
	// DiskReserve is the free space, in bytes, below which the leader refuses new
	// publishes (0: AutoReserve of the file system's size and Log.SegmentBytes).
	DiskReserve int64
}

// Store is one replica of a shard. Its Apply, Snapshot and Restore are called by Raft;
// the Storage methods (storage.go) by the broker on the leader.
type Store struct {
	opts   Options
	fs     vfs.FS // opts.FS, or the OS's
	logger *slog.Logger
	lock   *dirlock.Lock

	// group proposes commands; set by Attach once the Raft group is open.
	group *cluster.Group
	// applied is the index of the last entry applied: set on the FSM goroutine once
	// the entry's effects are done, and by Restore.
	applied atomic.Uint64
	// stateIndex is the newest snapshot index the state on disk covers (snapshot.go);
	// stateIndexMu orders its updates.
	stateIndex   atomic.Uint64
	stateIndexMu sync.Mutex
	// tmpSeq names temporary files.
	tmpSeq atomic.Uint64
	// selfRestore is set while Seed hands this store's own state to the group.
	selfRestore atomic.Bool
	// broken is the first committed entry this replica could not apply for a cause
	// other than its disk (a bug: every replica fails it alike or the store is damaged).
	broken atomic.Pointer[error]
	// stalled is set while a committed entry cannot be written here (stall.go).
	stalled atomic.Pointer[stall]
	// interrupted is closed by Interrupt: a stalled entry is retried no more.
	interrupted   chan struct{}
	interruptOnce sync.Once
	// space is the free space of the data directory's file system.
	space *diskSpace
	// pending holds the context proposals are waited for with (stall.go).
	pending struct {
		sync.Mutex
		ctx    context.Context
		cancel context.CancelFunc
	}
	// onAuth is told about changes of the replicated registry (OnAuthChange).
	onAuth atomic.Pointer[func(*meta.Store)]
	// sinceSnapshot is the bytes of the entries applied since the last snapshot;
	// grown receives when they reach Options.SnapshotBytes.
	sinceSnapshot atomic.Int64
	grown         chan struct{}
	// unawaited counts the metadata writes proposed without waiting and not yet
	// applied (or failed), for Settle.
	unawaited atomic.Int64

	// state is held for writing while Restore replaces the metadata store and the topic
	// logs, and for reading by ReadMeta: a reader outside the apply path never meets the
	// store closed, or missing, half way through an install.
	state sync.RWMutex

	mu struct {
		sync.Mutex
		meta      *meta.Store
		logs      map[string]*seglog.Log
		proposers map[string]*proposer
	}
}

// Open locks the data directory and opens the metadata store and every topic log in it.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	hasMeta, err := diskfs.Exists(opts.FS, filepath.Join(opts.DataDir, "meta"))
	if err != nil {
		return nil, err
	}
	if err := diskfs.MkdirAll(opts.FS, filepath.Join(opts.DataDir, "topics")); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := dirlock.Acquire(opts.FS, opts.DataDir)
	if err != nil {
		return nil, err
	}
	segment := opts.Log.SegmentBytes
	if segment <= 0 {
		segment = seglog.DefaultSegmentBytes
	}
	s := &Store{opts: opts, fs: opts.FS, logger: opts.Logger, lock: lock, grown: make(chan struct{}, 1),
		interrupted: make(chan struct{}), space: newDiskSpace(opts.FS, opts.DataDir, opts.DiskReserve, segment)}
	err = s.loadStateIndex(!hasMeta)
	if err == nil {
		err = s.recoverRestore()
	}
	if err == nil {
		err = s.openState()
	}
	if err != nil {
		lock.Release()
		return nil, err
	}
	return s, nil
}

// openState opens the metadata store and the topic logs found on disk.
func (s *Store) openState() error {
	ms, err := meta.OpenReplica(filepath.Join(s.opts.DataDir, "meta"), s.logger, s.fs)
	if err != nil {
		return err
	}
	ms.SetReplicator(metaReplicator{s})
	if fn := s.onAuth.Load(); fn != nil {
		ms.OnAuthReplicated(func() { (*fn)(ms) })
		defer (*fn)(ms) // a restored snapshot brings another registry
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.meta = ms
	s.mu.logs = make(map[string]*seglog.Log)
	s.mu.proposers = make(map[string]*proposer)
	names, err := diskfs.ListDirs(s.fs, filepath.Join(s.opts.DataDir, "topics"))
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := s.openLogLocked(name); err != nil {
			return err
		}
	}
	return nil
}

// Empty reports whether the store holds nothing: no topic log and no metadata.
func (s *Store) Empty() (bool, error) {
	s.mu.Lock()
	n, ms := len(s.mu.logs), s.mu.meta
	s.mu.Unlock()
	if n > 0 {
		return false, nil
	}
	return ms.Empty()
}

// OnAuthChange sets fn to be called with the metadata store whenever the applications,
// users or sessions it holds changed through the log, or the store was replaced by a
// snapshot. fn runs on the apply path and must not block.
func (s *Store) OnAuthChange(fn func(*meta.Store)) {
	s.onAuth.Store(&fn)
	ms := s.Meta()
	ms.OnAuthReplicated(func() { fn(ms) })
}

// Attach gives the store the Raft group it is the state machine of, for proposals.
func (s *Store) Attach(g *cluster.Group) { s.group = g }

// Close closes the logs and the metadata store and releases the directory. Raft must
// be shut down first.
func (s *Store) Close() error {
	s.Interrupt()
	s.state.Lock()
	err := s.closeState()
	s.state.Unlock()
	s.lock.Release()
	return err
}

func (s *Store) closeState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, l := range s.mu.logs {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log of topic %q: %w", name, err))
		}
	}
	s.mu.logs = nil
	if s.mu.meta != nil {
		errs = append(errs, s.mu.meta.Close())
		s.mu.meta = nil
	}
	return errors.Join(errs...)
}

func (s *Store) topicDir(name string) string {
	return filepath.Join(s.opts.DataDir, "topics", name)
}

// checkTopic refuses names that are not a plain directory name: a command names a
// directory to write or remove.
func checkTopic(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("replica: bad topic name %q", name)
	}
	return nil
}

func (s *Store) openLogLocked(name string) (*seglog.Log, error) {
	if l := s.mu.logs[name]; l != nil {
		return l, nil
	}
	if err := checkTopic(name); err != nil {
		return nil, err
	}
	o := s.opts.Log
	o.FS, o.Dir, o.NoSync = s.fs, s.topicDir(name), true
	o.Logger = s.logger.With("topic", name)
	l, err := seglog.Open(o)
	if err != nil {
		return nil, fmt.Errorf("open log of topic %q: %w", name, err)
	}
	if r := l.Recovery(); r.DroppedBytes > 0 {
		// As a single node reports it; here the Raft log restores what was committed.
		s.logger.Warn("recovered topic log", "topic", name, "segment", r.Segment, "truncated_at", r.TruncatedAt,
			"dropped_bytes", r.DroppedBytes, "reason", r.Reason, "restored_from", "the Raft log, as far as it was committed")
	}
	s.mu.logs[name] = l
	return l, nil
}

// Apply applies one committed entry. It runs on raft's FSM goroutine, in log order, on
// every replica; what it returns comes back from the leader's proposal.
//
// A failure caused by this replica's disk is returned as a *stallError and the entry is
// not counted as applied: ApplyBatch tries it again until it applies (stall.go).
func (s *Store) Apply(entry *raft.Log) (res any) {
	defer func() {
		if !isStall(res) {
			s.noteApplied(entry.Index)
		}
	}()
	c, err := decodeCommand(entry.Data)
	if err != nil {
		err = fmt.Errorf("replica: entry %d: %w", entry.Index, err)
		s.setBroken(err)
		return err
	}
	switch c.kind {
	case kindMeta:
		s.mu.Lock()
		ms := s.mu.meta
		s.mu.Unlock()
		if err := ms.ApplyReplicated(entry.Index, c.repr); err != nil {
			return s.failed(entry, c, err)
		}
		return nil
	case kindAppend:
		if err := staleAppend(entry, c); err != nil {
			return err
		}
		return s.applyAppend(entry, c)
	case kindTrim:
		s.mu.Lock()
		l, err := s.openLogLocked(c.topic)
		s.mu.Unlock()
		if err != nil {
			return s.failed(entry, c, err)
		}
		n, err := l.DeleteSegmentsBefore(c.base)
		if err != nil {
			return s.failed(entry, c, err)
		}
		return n
	case kindRemove:
		if err := s.removeLog(c.topic); err != nil {
			return s.failed(entry, c, err)
		}
		return nil
	}
	return fmt.Errorf("replica: command kind %d", c.kind)
}

// applyAppend appends the payloads the log does not hold yet, at the offsets the leader
// reserved. It returns the offset of the first payload (uint64) or an error.
func (s *Store) applyAppend(entry *raft.Log, c command) any {
	var res any
	var wg sync.WaitGroup
	s.queueAppend(entry, c, &res, &wg, map[string]uint64{})
	wg.Wait()
	return res
}

// ApplyBatch applies committed entries in order (raft.BatchingFSM). Consecutive appends
// are queued to their logs together and waited for once, so a batch of publishes costs
// one hand-off to each log's writer instead of one per entry.
//
// From the first entry this replica's disk failed on, the entries are applied again one
// by one, each until it applies (applyUntilDone): entries after it that were applied
// already (appends to other topics) are found applied and skipped, as in a replay.
func (s *Store) ApplyBatch(entries []*raft.Log) []any {
	out := make([]any, len(entries))
	var wg sync.WaitGroup
	ends := map[string]uint64{} // each topic log's end once what is queued is written
	var bytes int64
	stalled := -1 // the first entry that failed for the disk
	for i, e := range entries {
		bytes += int64(len(e.Data))
		if e.Type != raft.LogCommand {
			continue
		}
		c, err := decodeCommand(e.Data)
		if err != nil || c.kind != kindAppend {
			// Anything else sees every earlier append done.
			wg.Wait()
			clear(ends)
			if stalled = firstStall(out[:i]); stalled >= 0 {
				break
			}
			if out[i] = s.Apply(e); isStall(out[i]) {
				stalled = i
				break
			}
			continue
		}
		s.queueAppend(e, c, &out[i], &wg, ends)
	}
	wg.Wait()
	if stalled < 0 {
		stalled = firstStall(out)
	}
	if stalled >= 0 {
		for j := stalled; j < len(entries); j++ {
			if entries[j].Type != raft.LogCommand {
				continue
			}
			if out[j] = s.applyUntilDone(entries[j]); isStall(out[j]) {
				return out // interrupted: nothing from here on is applied
			}
		}
	}
	if len(entries) > 0 {
		s.noteApplied(entries[len(entries)-1].Index)
	}
	s.noteLogBytes(bytes)
	return out
}

// firstStall returns the index of the first stallError in out, or -1.
func firstStall(out []any) int {
	for i, res := range out {
		if isStall(res) {
			return i
		}
	}
	return -1
}

// noteLogBytes counts n bytes of applied entries towards the next snapshot.
func (s *Store) noteLogBytes(n int64) {
	if s.opts.SnapshotBytes > 0 && s.sinceSnapshot.Add(n) >= s.opts.SnapshotBytes {
		select {
		case s.grown <- struct{}{}:
		default: // already signalled
		}
	}
}

// Grown receives when the entries applied since the last snapshot reach
// Options.SnapshotBytes: raft counts entries, not bytes, and a restart replays
// everything after the last snapshot.
func (s *Store) Grown() <-chan struct{} { return s.grown }

// errStaleTerm refuses an append its broker made for another term than the one the
// leader appended it in.
var errStaleTerm = errors.New("replica: append proposed by the broker of another term")

// staleAppend refuses an append whose broker's term is not the entry's (see
// kindAppendInTerm): every replica decides alike from the entry alone, replays too.
func staleAppend(entry *raft.Log, c command) error {
	if c.term != 0 && c.term != entry.Term {
		return fmt.Errorf("%w: topic %q: its broker served term %d, the entry is of term %d; the client sends it again", errStaleTerm, c.topic, c.term, entry.Term)
	}
	return nil
}

// noteApplied records that every entry up to index is applied.
func (s *Store) noteApplied(index uint64) {
	if index > s.applied.Load() {
		s.applied.Store(index)
	}
}

// AppliedIndex is the index of the last entry this replica has applied. Raft's own
// applied index counts entries handed to the state machine, which may still be
// working through them (a restarted node replaying its log).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// queueAppend queues an append entry to its topic log: *res is set before wg is done.
// ends holds each topic log's end once what is queued is written.
//
// An entry is refused, on every replica alike, when its first offset is past the log's
// end (the leader reserved offsets after an entry that failed, or the topic was removed
// meanwhile); the leader's proposer then starts again from the log's end. A replay
// after a restart may meet a log that has grown past that offset since: the refusal is
// recorded, so the replay refuses the entry again rather than storing it out of place.
func (s *Store) queueAppend(entry *raft.Log, c command, res *any, wg *sync.WaitGroup, ends map[string]uint64) {
	if err := checkTopic(c.topic); err != nil {
		*res = err
		return
	}
	if err := staleAppend(entry, c); err != nil {
		*res = err
		return
	}
	s.mu.Lock()
	ms := s.mu.meta
	l := s.mu.logs[c.topic]
	s.mu.Unlock()
	gap := func(next uint64) {
		if err := ms.MarkRefused(entry.Index); err != nil {
			*res = s.failed(entry, c, err)
			return
		}
		*res = fmt.Errorf("%w: topic %q: append at offset %d, log ends at %d", errGap, c.topic, c.base, next)
	}
	if refused, err := ms.Refused(entry.Index); err != nil || refused {
		if err != nil {
			*res = s.failed(entry, c, err)
			return
		}
		*res = fmt.Errorf("%w: topic %q: append at offset %d refused before", errGap, c.topic, c.base)
		return
	}
	if l == nil && c.base > 0 {
		if ok, err := diskfs.Exists(s.fs, s.topicDir(c.topic)); err == nil && !ok {
			gap(0) // no log, and no directory made for a refused entry
			return
		}
	}
	if l == nil {
		var err error
		s.mu.Lock()
		l, err = s.openLogLocked(c.topic)
		s.mu.Unlock()
		if err != nil {
			*res = s.failed(entry, c, err)
			return
		}
	}
	next, ok := ends[c.topic]
	if !ok {
		next = l.Next()
	}
	n := uint64(len(c.payloads))
	switch {
	case c.base > next:
		gap(next)
		return
	case c.base+n <= next:
		*res = c.base // already here: a replay after a restart
		return
	}
	ends[c.topic] = c.base + n
	wg.Add(1)
	l.AppendAsync(c.payloads[next-c.base:], func(first uint64, err error) {
		defer wg.Done()
		switch {
		case err != nil:
			*res = s.failed(entry, c, err)
		case first != next:
			err := fmt.Errorf("replica: apply entry %d: topic %q appended at %d, expected %d", entry.Index, c.topic, first, next)
			s.setBroken(err)
			*res = err
		default:
			*res = c.base
		}
	})
}

// errGap marks an append refused because offsets before it were never stored.
var errGap = errors.New("replica: gap in reserved offsets")

// failed reports an entry this replica could not apply because its disk failed it: a
// *stallError, tried again until it applies (stall.go).
func (s *Store) failed(entry *raft.Log, c command, err error) error {
	return &stallError{fmt.Errorf("replica: apply entry %d (kind %d, topic %q): %w", entry.Index, c.kind, c.topic, err)}
}

// setBroken records that a committed entry could not be applied for a cause other than
// the disk (an entry that does not decode, an append that landed elsewhere than
// reserved): this replica's state may now differ from the others', so it must not lead
// (it may still vote and hold the log). Replace the node (dmq cluster remove-node, a new
// one with --join) to rebuild it.
func (s *Store) setBroken(err error) {
	if s.broken.CompareAndSwap(nil, &err) {
		s.logger.Error("replica: a committed entry could not be applied; this node will not lead until it is rebuilt (remove it and add a fresh node)", "err", err)
	} else {
		s.logger.Error("replica: another committed entry could not be applied", "err", err)
	}
}

// Broken returns the first committed entry this replica could not apply, or nil.
func (s *Store) Broken() error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// removeLog closes and deletes a topic's log.
func (s *Store) removeLog(name string) error {
	if err := checkTopic(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.mu.logs[name]; l != nil {
		l.Close()
		delete(s.mu.logs, name)
	}
	delete(s.mu.proposers, name)
	if err := s.fs.RemoveAll(s.topicDir(name)); err != nil {
		return err
	}
	return diskfs.SyncDir(s.fs, filepath.Join(s.opts.DataDir, "topics"))
}
