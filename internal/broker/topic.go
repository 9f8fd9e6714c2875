package broker

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
)

// topic is one topic: its log and its groups.
type topic struct {
	b    *Broker
	name string
	log  *seglog.Log

	// infoMu guards info, which registry decisions change.
	infoMu sync.RWMutex
	info   meta.Topic
	// dedupe drops retransmitted messages (same client message id).
	dedupe *dedupeWindow
	// delayMu serializes delivering due delayed messages with cancels.
	delayMu        sync.Mutex
	delayedPending atomic.Int64
	// delayedFrom is a due time (ms) below which no delayed message is
	// pending: scans of the delay store start there (see fireDelayed).
	delayedFrom atomic.Int64
	// recoverAt is when the last attempt to recover the failed log began
	// (Unix ns); see recoverLog.
	recoverAt atomic.Int64

	mu     sync.RWMutex
	groups map[string]*group
}

// addGroup registers g and starts its dispatcher.
func (t *topic) addGroup(g *group) {
	t.mu.Lock()
	t.groups[g.info.Name] = g
	t.mu.Unlock()
	go g.run()
	g.notify()
}

func (t *topic) group(name string) *group {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.groups[name]
}

func (t *topic) groupList() []*group {
	t.mu.RLock()
	defer t.mu.RUnlock()
	gs := make([]*group, 0, len(t.groups))
	for _, g := range t.groups {
		gs = append(gs, g)
	}
	return gs
}

// notifyGroups wakes every dispatcher after new messages were stored.
func (t *topic) notifyGroups() {
	t.mu.RLock()
	for _, g := range t.groups {
		g.notify()
	}
	t.mu.RUnlock()
}

func (t *topic) createGroup(spec GroupSpec) (GroupInfo, error) {
	t.mu.Lock()
	if t.groups[spec.Name] != nil {
		t.mu.Unlock()
		return GroupInfo{}, errorf(KindExists, "group %q of topic %q already exists", spec.Name, t.name)
	}
	start := t.log.Next()
	if spec.Earliest {
		start = t.log.First()
	}
	info := meta.Group{
		Topic:        t.name,
		Name:         spec.Name,
		Mode:         spec.Mode,
		AckMode:      spec.AckMode,
		AckTimeoutMs: spec.AckTimeout.Milliseconds(),
		CreatedAtMs:  t.b.Now().UnixMilli(),
		StartOffset:  start,
		MaxAttempts:  uint32(spec.MaxAttempts),
	}
	for _, d := range spec.RetryBackoff {
		info.RetryBackoffMs = append(info.RetryBackoffMs, d.Milliseconds())
	}
	var initial []meta.Cursor
	if spec.Mode == ModeCluster {
		initial = []meta.Cursor{{Member: clusterMemberID, Floor: start}}
	}
	if err := t.b.meta.PutGroup(info, initial); err != nil {
		t.mu.Unlock()
		return GroupInfo{}, wrap(KindInternal, err, "store group %q of topic %q", spec.Name, t.name)
	}
	g := newGroup(t, info, initial, 0)
	t.mu.Unlock()
	t.addGroup(g)
	t.b.logger.Info("group created", "topic", t.name, "group", spec.Name, "mode", spec.Mode, "ack", spec.AckMode)
	return g.describe(), nil
}

// snapshot returns the topic's registry record.
func (t *topic) snapshot() meta.Topic {
	t.infoMu.RLock()
	defer t.infoMu.RUnlock()
	return t.info
}

func (t *topic) describe() TopicInfo {
	t.infoMu.RLock()
	defer t.infoMu.RUnlock()
	return t.describeLocked()
}

func (t *topic) describeLocked() TopicInfo {
	ti := TopicInfo{Topic: t.info, FirstOffset: t.log.First(), NextOffset: t.log.Next(), StoredBytes: t.log.Size()}
	ti.Status, ti.Environment = status(t.info), environment(t.name)
	ti.DedupeWindowMs = t.dedupe.window.Milliseconds()
	ti.DelayedPending = uint64(max(t.delayedPending.Load(), 0))
	if ti.DelayedPending > 0 {
		ti.NextDelayedDueMs, _ = t.b.delays.NextDue(t.name)
	}
	ti.Segments = len(t.log.Segments())
	return ti
}

// floor is the lowest position over all groups, or the log end without groups.
func (t *topic) floor() uint64 {
	f := t.log.Next()
	for _, g := range t.groupList() {
		f = min(f, g.floor())
	}
	return f
}

// close stops every group and closes the log.
func (t *topic) close(reason error) {
	gs := t.groupList()
	sort.Slice(gs, func(i, j int) bool { return gs[i].info.Name < gs[j].info.Name })
	for _, g := range gs {
		g.stop(reason)
	}
	if err := t.b.store.CloseLog(t.name, t.log); err != nil {
		t.b.logger.Error("close topic log", "topic", t.name, "err", err)
	}
}

// recoverInterval spaces the attempts to bring a failed log back.
const recoverInterval = time.Second

// recoverLog starts, at most once per recoverInterval, an attempt to bring
// the topic's log back after a write or fsync failure (a full disk, a
// failing device): appends fail until it succeeds, and producers retry.
func (t *topic) recoverLog() {
	now := t.b.Now().UnixNano()
	last := t.recoverAt.Load()
	if now-last < int64(recoverInterval) || !t.recoverAt.CompareAndSwap(last, now) {
		return
	}
	go func() {
		if err := t.log.Recover(context.Background()); errors.Is(err, seglog.ErrClosed) {
			return
		} else if err != nil {
			t.b.logger.Warn("topic log still failing; publishes are refused", "topic", t.name, "err", err)
			return
		}
		t.b.logger.Info("topic log recovered; publishes resume", "topic", t.name)
	}()
}

// topicList returns the broker's topics, in no order.
func (b *Broker) topicList() []*topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	ts := make([]*topic, 0, len(b.mu.topics))
	for _, t := range b.mu.topics {
		ts = append(ts, t)
	}
	return ts
}
