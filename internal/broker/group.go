package broker

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/seglog"
	"github.com/dmqio/dmq/internal/trace"
)

// Group modes and ack modes as stored and shown.
const (
	ModeCluster     = "cluster"
	ModeBroadcast   = "broadcast"
	AckBusiness     = "business"
	AckAuto         = "auto"
	clusterMemberID = "" // the single cursor of a cluster group
)

// group is a consumer group of one topic. It owns its cursors and the
// dispatcher goroutine that hands messages to attached subscriptions.
type group struct {
	t      *topic
	info   meta.Group
	policy policy

	// wake has room for one signal: publishes, credits, acks, nacks, joins
	// and leaves all send to it without blocking, and the dispatcher runs
	// once for any number of signals that arrived meanwhile.
	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	mu struct {
		sync.Mutex
		cursors     map[string]*cursor // by member; "" for cluster groups
		deadLetters uint64             // dead letters stored, redriven ones included
		// closed is set when the group stops; final once stop persisted
		// the cursors for the last time, after which nothing is written:
		// requests still arriving (a consumer's ack racing the shutdown)
		// fail with ErrClosed and change nothing.
		closed, final bool
	}
}

func newGroup(t *topic, info meta.Group, cursors []meta.Cursor, deadLetters uint64) *group {
	g := &group{t: t, info: info, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	g.policy = policy{
		autoAck:     info.AckMode == AckAuto,
		ackTimeout:  info.AckTimeoutMs * int64(time.Millisecond),
		backoff:     durationsNs(info.RetryBackoffMs),
		maxAttempts: info.MaxAttempts,
	}
	g.mu.cursors = make(map[string]*cursor)
	g.mu.deadLetters = deadLetters
	for _, c := range cursors {
		g.mu.cursors[c.Member] = newCursor(c)
	}
	if info.Mode == ModeCluster && g.mu.cursors[clusterMemberID] == nil {
		g.mu.cursors[clusterMemberID] = newCursor(meta.Cursor{Member: clusterMemberID, Floor: info.StartOffset})
	}
	return g
}

func (g *group) notify() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// run is the dispatcher loop. It wakes on g.wake (new messages, credits,
// acks, membership changes) and on the earliest ack deadline, and stops when
// quit is closed.
func (g *group) run() {
	defer close(g.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-g.quit:
			return
		case <-g.wake:
		case <-timer.C:
		}
		next := g.dispatch(g.t.b.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// stop ends the dispatcher and every subscription, and persists cursors.
func (g *group) stop(reason error) {
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		return
	}
	g.mu.closed = true
	var subs []*Subscription
	for _, c := range g.mu.cursors {
		subs = append(subs, c.sessions...)
	}
	g.mu.Unlock()
	close(g.quit)
	<-g.done
	for _, s := range subs {
		s.end(reason)
	}
	g.mu.Lock()
	g.persistLocked()
	g.mu.final = true
	g.mu.Unlock()
}

// dispatch expires overdue deliveries and hands out messages to every
// subscription with credit. It returns how long the dispatcher may sleep.
func (g *group) dispatch(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return time.Hour
	}
	nowNs := now.UnixNano()
	sleep := time.Hour
	for _, c := range g.mu.cursors {
		c.expire(nowNs, &g.policy)
		if len(c.sessions) > 0 {
			g.fillLocked(c, nowNs)
		}
		if d, ok := c.nextWake(); ok {
			if wait := time.Duration(d - nowNs); wait < sleep {
				sleep = max(wait, time.Millisecond)
			}
		}
	}
	g.persistLocked()
	return sleep
}

// maxDispatchBatch bounds how many messages one dispatch pass hands out per
// cursor, so one busy group cannot hold its lock for long; maxPickBatch
// bounds how many go to one session before the next gets its turn, so load
// spreads over the members of a cluster group.
const (
	maxDispatchBatch = 4096
	maxPickBatch     = 256
)

// fillLocked hands messages of cursor c to its sessions while they have credit.
func (g *group) fillLocked(c *cursor, nowNs int64) {
	log := g.t.log
	end := log.Next()
	c.skipTo(log.First())
	window := uint64(g.t.b.cfg.MaxUnacked)
	var offs []uint64
	idle := 0 // sessions in a row that had nothing to take
	for sent := 0; sent < maxDispatchBatch; {
		s, others, served := c.pickSession()
		if s == nil {
			return
		}
		offs = offs[:0]
		for len(offs) < min(s.credit, maxPickBatch, maxDispatchBatch-sent) {
			off, ok := c.take(nowNs, end, window, s, others)
			if !ok {
				break
			}
			offs = append(offs, off)
		}
		if len(offs) == 0 {
			// Nothing for s; what is left may be meant for another session.
			if idle++; !others || idle >= len(c.sessions) {
				return
			}
			served()
			continue
		}
		idle = 0
		served()
		payloads, err := g.readOffsetsLocked(c, offs)
		if err != nil {
			// Give back what was not delivered; it is retried at the next wake.
			c.ready = append(append([]uint64(nil), offs[len(payloads):]...), c.ready...)
			if errors.Is(err, seglog.ErrOutOfRange) {
				c.skipTo(log.First())
			} else {
				g.t.b.logger.Error("read message for delivery", "topic", g.t.name, "group", g.info.Name, "offset", offs[len(payloads)], "err", err)
			}
			offs = offs[:len(payloads)]
		}
		batch := make([]Delivery, len(payloads))
		for i, p := range payloads {
			attempt, lastFailure := c.deliver(offs[i], s, nowNs, &g.policy)
			batch[i] = Delivery{Offset: offs[i], Attempt: attempt, LastFailure: lastFailure, Payload: p}
		}
		// Stamped now, not at nowNs: that was read before the lock was taken and
		// the log's end looked up, so it can precede the publish of a message
		// stored meanwhile, whose trace would show it delivered before published.
		g.traceDelivered(s.clientID, batch, g.t.b.Now().UnixMilli())
		s.push(batch)
		sent += len(batch)
		if g.policy.autoAck {
			g.t.b.stats.Consumed(g.t.name, s.clientID, len(batch))
		}
		if err != nil {
			return
		}
	}
}

// readOffsetsLocked reads the payloads of offs: redriven dead letters from
// the dead-letter store, the others from the log with one ReadBatch per run
// of consecutive offsets. On error it returns the payloads read before it.
func (g *group) readOffsetsLocked(c *cursor, offs []uint64) ([][]byte, error) {
	out := make([][]byte, 0, len(offs))
	for i := 0; i < len(offs); {
		if c.redriven[offs[i]] {
			dl, err := g.t.b.meta.GetDeadLetter(g.t.name, g.info.Name, offs[i], c.member)
			if err != nil {
				return out, fmt.Errorf("read redriven dead letter %d: %w", offs[i], err)
			}
			out = append(out, dl.Payload)
			i++
			continue
		}
		j := i + 1
		for j < len(offs) && offs[j] == offs[j-1]+1 && !c.redriven[offs[j]] {
			j++
		}
		ps, err := g.t.log.ReadBatch(offs[i], j-i, 4<<20)
		if err != nil {
			return out, err
		}
		out = append(out, ps...)
		i += len(ps)
	}
	return out, nil
}

// traceDelivered records a delivery batch as runs of consecutive offsets
// with the same attempt number.
func (g *group) traceDelivered(client string, batch []Delivery, nowMs int64) {
	if g.t.b.trace == nil {
		return
	}
	for i := 0; i < len(batch); {
		j := i
		var offs []uint64
		for j < len(batch) && batch[j].Attempt == batch[i].Attempt {
			offs = append(offs, batch[j].Offset)
			j++
		}
		g.t.b.traceRuns(trace.Delivered, g.t.name, g.info.Name, client, batch[i].Attempt, offs, nowMs)
		i = j
	}
}

// persistLocked writes pending cursor changes.
func (g *group) persistLocked() {
	if g.mu.final {
		return
	}
	var ups []meta.CursorUpdate
	nowMs := g.t.b.Now().UnixMilli()
	for _, c := range g.mu.cursors {
		if u, ok := c.takeUpdate(nowMs); ok {
			for i := range u.DeadLetters {
				g.fillDeadLetterLocked(c.member, &u.DeadLetters[i])
			}
			g.mu.deadLetters -= min(uint64(len(u.FinishedDeadLetters)), g.mu.deadLetters)
			for client, n := range c.failedBy {
				g.t.b.stats.Failed(g.t.name, client, n)
			}
			clear(c.failedBy)
			if len(c.events) > 0 {
				for i := range c.events {
					c.events[i].Topic, c.events[i].Group = g.t.name, g.info.Name
				}
				g.t.b.trace.Add(c.events...)
				c.events = c.events[:0]
			}
			ups = append(ups, u)
		}
	}
	if len(ups) == 0 {
		return
	}
	if err := g.t.b.meta.SaveCursors(g.t.name, g.info.Name, ups); err != nil {
		g.t.b.logger.Error("save group position", "topic", g.t.name, "group", g.info.Name, "err", err)
	}
}

// fillDeadLetterLocked adds the message record to a new dead letter: from
// the log, or from its earlier dead-letter record when it was redriven.
func (g *group) fillDeadLetterLocked(member string, dl *meta.DeadLetter) {
	dl.Member = member
	if p, err := g.t.log.Read(dl.Offset); err == nil {
		dl.Payload = p
	} else if old, err2 := g.t.b.meta.GetDeadLetter(g.t.name, g.info.Name, dl.Offset, member); err2 == nil {
		dl.Payload = old.Payload
		g.mu.deadLetters-- // rewritten, not added
	} else {
		g.t.b.logger.Error("dead letter without its message", "topic", g.t.name, "group", g.info.Name, "offset", dl.Offset, "err", err)
	}
	g.mu.deadLetters++
	g.t.b.logger.Warn("message dead-lettered", "topic", g.t.name, "group", g.info.Name, "member", member,
		"offset", dl.Offset, "attempts", dl.Attempts, "reason", dl.Reason)
}

// attach joins a subscription to the group and returns it with its cursor.
func (g *group) attach(s *Subscription) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return errorf(KindUnavailable, "group %q of topic %q is closing", g.info.Name, g.t.name)
	}
	member := clusterMemberID
	if g.info.Mode == ModeBroadcast {
		member = s.clientID
	}
	c := g.mu.cursors[member]
	if c == nil {
		// A new broadcast member gets every message of the group: it starts
		// where the group started, or at the oldest message still stored.
		floor := max(g.info.StartOffset, g.t.log.First())
		if err := g.t.b.meta.PutCursor(g.t.name, g.info.Name, meta.Cursor{Member: member, Floor: floor}); err != nil {
			return wrap(KindInternal, err, "save position of member %q", member)
		}
		c = newCursor(meta.Cursor{Member: member, Floor: floor})
		g.mu.cursors[member] = c
	}
	s.cur = c
	c.sessions = append(c.sessions, s)
	return nil
}

// detach removes a subscription; its unacked deliveries go back for redelivery.
func (g *group) detach(s *Subscription) {
	g.mu.Lock()
	if s.cur != nil {
		s.cur.detach(s, g.t.b.Now().UnixNano(), &g.policy)
		g.persistLocked()
	}
	g.mu.Unlock()
	g.notify()
}

// ackOrNack applies acks (nack=false) or nacks to offsets of member's cursor.
func (g *group) ackOrNack(member string, offs []uint64, nack bool, reason string) error {
	reason = cutText(reason, MaxNackReasonLen) // a consumer's error text: kept, not refused
	end := g.t.log.Next()
	for _, off := range offs {
		if off >= end {
			return errorf(KindInvalid, "message id %d does not exist in topic %q", off, g.t.name)
		}
	}
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	client := member // who acks, for the statistics
	if g.info.Mode == ModeCluster {
		member = clusterMemberID
	}
	c := g.mu.cursors[member]
	if c == nil {
		g.mu.Unlock()
		return errorf(KindNotFound, "client %q is not a member of broadcast group %q of topic %q", member, g.info.Name, g.t.name)
	}
	// Check every id first: a bad one changes nothing.
	for _, off := range offs {
		if nack {
			if _, ok := c.inflight[off]; !ok {
				g.mu.Unlock()
				return errorf(KindInvalid, "message id %d is not in flight in group %q of topic %q: it was acked, timed out or not delivered", off, g.info.Name, g.t.name)
			}
		} else if off >= c.next && !c.redriven[off] && !c.isAcked(off) {
			g.mu.Unlock()
			return errorf(KindInvalid, "message id %d was not delivered to group %q of topic %q", off, g.info.Name, g.t.name)
		}
	}
	var changed bool
	now := g.t.b.Now().UnixNano()
	var acked []uint64
	for _, off := range offs {
		if nack {
			changed = c.nack(off, reason, now, &g.policy) || changed
		} else if c.ack(off) {
			changed = true
			acked = append(acked, off)
		}
	}
	g.t.b.stats.Consumed(g.t.name, client, len(acked))
	g.t.b.traceRuns(trace.Acked, g.t.name, g.info.Name, client, 0, acked, now/1e6)
	g.persistLocked()
	g.mu.Unlock()
	if changed {
		g.notify()
	}
	return nil
}

// grant adds credit to a subscription.
func (g *group) grant(s *Subscription, n uint32) error {
	g.mu.Lock()
	limit := g.t.b.cfg.MaxCredit
	if s.credit+int(n) > limit {
		g.mu.Unlock()
		return errorf(KindInvalid, "credit %d would exceed the limit of %d outstanding messages per subscription", s.credit+int(n), limit)
	}
	s.credit += int(n)
	g.mu.Unlock()
	g.notify()
	return nil
}

// GroupInfo describes a group and its progress.
type GroupInfo struct {
	meta.Group
	AckFloor      uint64
	Backlog       uint64
	InFlight      uint64
	MembersOnline int
	DeadLetters   uint64
	// OldestUnackedMs is when the oldest message not yet acked by every
	// member was published (Unix ms; 0 when nothing waits).
	OldestUnackedMs int64
	// Abandoned: no member is connected and the oldest unacked message has
	// waited longer than AbandonedGroupAfter. Such a group holds messages back
	// from retention for nobody, which ends in a full disk.
	Abandoned bool
}

// OldestUnackedAge is how long the oldest unacked message has waited at
// now (0 when nothing waits).
func (gi GroupInfo) OldestUnackedAge(now time.Time) time.Duration {
	if gi.OldestUnackedMs == 0 {
		return 0
	}
	return max(now.Sub(time.UnixMilli(gi.OldestUnackedMs)), 0)
}

func (g *group) describe() GroupInfo {
	end := g.t.log.Next()
	g.mu.Lock()
	gi := GroupInfo{Group: g.info, AckFloor: g.floorLocked()}
	gi.DeadLetters = g.mu.deadLetters
	for _, c := range g.mu.cursors {
		gi.Backlog = max(gi.Backlog, c.backlog(end))
		gi.InFlight += uint64(len(c.inflight))
		gi.MembersOnline += len(c.sessions)
	}
	g.mu.Unlock()
	// Every message below the floor is acked by every member, so the one
	// at the floor is the oldest still waiting.
	if gi.Backlog > 0 && gi.AckFloor < end {
		if ms, err := g.t.publishedAt(gi.AckFloor); err == nil {
			gi.OldestUnackedMs = ms
		}
	}
	gi.Abandoned = gi.MembersOnline == 0 && gi.OldestUnackedMs != 0 &&
		gi.OldestUnackedAge(g.t.b.Now()) > g.t.b.cfg.AbandonedGroupAfter
	return gi
}

// floor returns the lowest position of the group: no message at or above it
// may be removed by retention.
func (g *group) floor() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.floorLocked()
}

// floorLocked is the lowest member position, or where the group started
// when it has no member yet.
func (g *group) floorLocked() uint64 {
	if len(g.mu.cursors) == 0 {
		return g.info.StartOffset
	}
	f := ^uint64(0)
	for _, c := range g.mu.cursors {
		f = min(f, c.floor)
	}
	return f
}

func sortGroups(gs []GroupInfo) {
	sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
}
