package broker

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/trace"
)

// Delayed messages are stored in the metadata store by due time (see
// meta/delay.go) until they are due; then the scheduler (package delay)
// has fireDelayed append them to the topic's log, where every group gets
// them like any other message.
//
// A delayed message has an id of its own, "d<due ms>-<seq>", returned by
// Publish and used to cancel it; once delivered it also gets an ordinary
// message id. The delivered copy carries the delayed id in the header
// HeaderDelayID and as its client message id, so a crash between the
// append and the removal from the delay store cannot deliver it twice (the
// duplicate window drops the second append).

// HeaderDelayID names the header that carries a delivered message's
// delayed id.
const HeaderDelayID = "x-dmq-delay-id"

// delayFireBatch bounds how many due messages one append carries.
const delayFireBatch = 1000

// delaySeq makes the sequence part of delayed ids: unique and increasing
// within a broker, and across restarts because it starts at the wall clock.
var delaySeq atomic.Uint64

func nextDelaySeq() uint64 {
	now := uint64(time.Now().UnixNano())
	for {
		old := delaySeq.Load()
		n := max(old+1, now)
		if delaySeq.CompareAndSwap(old, n) {
			return n
		}
	}
}

// FormatDelayID returns the id of a delayed message.
func FormatDelayID(dueMs int64, seq uint64) string {
	return "d" + strconv.FormatInt(dueMs, 10) + "-" + strconv.FormatUint(seq, 36)
}

// ParseDelayID splits a delayed message id. Only the form FormatDelayID
// gives is accepted (no upper case, no leading zeros, no '+'), so one
// delayed message has one id.
func ParseDelayID(id string) (dueMs int64, seq uint64, err error) {
	due, sq, ok := strings.Cut(strings.TrimPrefix(id, "d"), "-")
	if !strings.HasPrefix(id, "d") || !ok {
		return 0, 0, errorf(KindInvalid, "%q is not a delayed message id (they look like d1764151200000-k3x9)", id)
	}
	if dueMs, err = strconv.ParseInt(due, 10, 64); err == nil {
		seq, err = strconv.ParseUint(sq, 36, 64)
	}
	if err != nil || FormatDelayID(dueMs, seq) != id { // only the form FormatDelayID gives
		return 0, 0, errorf(KindInvalid, "%q is not a delayed message id (they look like d1764151200000-k3x9)", id)
	}
	return dueMs, seq, nil
}

// scheduleDelayed stores the delayed messages msgs[idx...] durably and
// returns their delayed ids.
func (b *Broker) scheduleDelayed(t *topic, msgs []*message.Message, idx []int, nowMs int64) ([]string, error) {
	es := make([]meta.DelayedEntry, len(idx))
	ids := make([]string, len(idx))
	var earliest int64
	for k, i := range idx {
		m := msgs[i]
		m.PublishedAtMs = nowMs
		es[k] = meta.DelayedEntry{DueMs: m.DeliverAtMs, Seq: nextDelaySeq(), Payload: message.Append(nil, m)}
		ids[k] = FormatDelayID(es[k].DueMs, es[k].Seq)
		if k == 0 || m.DeliverAtMs < earliest {
			earliest = m.DeliverAtMs
		}
	}
	if err := b.meta.ScheduleDelayed(t.name, es); err != nil {
		return nil, wrap(KindUnavailable, err, "store delayed messages of topic %q", t.name)
	}
	// A message due before the point the scheduler already passed must
	// still be found: move that point back. Under delayMu, so that a
	// delivery in progress, which moves the point forward when done, cannot
	// move it past this message.
	t.delayMu.Lock()
	if earliest < t.delayedFrom.Load() {
		t.delayedFrom.Store(earliest)
	}
	t.delayMu.Unlock()
	t.delayedPending.Add(int64(len(es)))
	b.delays.Schedule(t.name, earliest)
	return ids, nil
}

// fireDelayed appends the topic's messages due at or before nowMs to its
// log and removes them from the delay store. It returns when the next one
// is due. Called by the scheduler's goroutine.
func (b *Broker) fireDelayed(topicName string, nowMs int64) (int64, bool) {
	t, err := b.topic(topicName)
	if err != nil {
		return 0, false // deleted, or the broker is closing
	}
	t.delayMu.Lock()
	defer t.delayMu.Unlock()
	from := t.delayedFrom.Load()
	// One scan finds both the due messages and, past them, when the next
	// one is due: a seek costs a block read, so fires do one, not two.
	var next int64
	hasNext := false
	for {
		var es []meta.DelayedEntry
		if err := b.meta.ScanDelayed(topicName, from, 0, 0, 0, func(e meta.DelayedEntry) bool {
			if e.DueMs > nowMs {
				next, hasNext = e.DueMs, true
				return false
			}
			es = append(es, e)
			return len(es) < delayFireBatch
		}); err != nil {
			b.logger.Error("read due delayed messages", "topic", topicName, "err", err)
			return nowMs + 1000, true
		}
		if len(es) == 0 {
			break
		}
		msgs := make([]*message.Message, len(es))
		for i, e := range es {
			m, err := message.Decode(e.Payload)
			if err != nil {
				b.logger.Error("corrupt delayed message; dropped", "topic", topicName, "id", FormatDelayID(e.DueMs, e.Seq), "err", err)
				m = message.Message{Body: []byte{0}}
			}
			id := FormatDelayID(e.DueMs, e.Seq)
			hs := make(map[string]string, len(m.Headers)+1)
			for k, v := range m.Headers {
				hs[k] = v
			}
			hs[HeaderDelayID] = id
			m.Headers, m.ClientMessageID, m.DeliverAtMs = hs, "delay:"+id, 0
			msgs[i] = &m
		}
		rs, err := b.publishInternal(t, msgs)
		if err != nil {
			b.logger.Error("deliver due delayed messages; retrying in 1s", "topic", topicName, "count", len(msgs), "err", err)
			return nowMs + 1000, true
		}
		if err := b.meta.RemoveDelayed(topicName, es); err != nil {
			b.logger.Error("remove delivered delayed messages", "topic", topicName, "err", err)
			return nowMs + 1000, true
		}
		t.delayedPending.Add(-int64(len(es)))
		b.traceDue(t.name, msgs, rs, nowMs)
		if len(es) < delayFireBatch {
			break
		}
		from = es[len(es)-1].DueMs // the next batch: what this one did not reach
	}
	// Everything due up to nowMs is delivered: later scans start after it.
	// (Publishes move the point back under delayMu, which is held here.)
	t.delayedFrom.Store(nowMs + 1)
	return next, hasNext
}

// DelayedMessage is a pending delayed message.
type DelayedMessage struct {
	ID      string
	DueMs   int64
	Message message.Message
}

// DelayedFilter narrows ListDelayed.
type DelayedFilter struct {
	FromMs, ToMs int64  // due in [FromMs, ToMs); zero: unbounded
	Key          string // only this business key
	AfterID      string // paging
	Limit        int    // default 100, at most 1000
}

// ListDelayed lists a topic's pending delayed messages, soonest first, with
// the topic's total and next due time.
func (b *Broker) ListDelayed(topicName string, f DelayedFilter) ([]DelayedMessage, uint64, int64, error) {
	t, err := b.topic(topicName)
	if err != nil {
		return nil, 0, 0, err
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = min(max(f.Limit, 100), 1000)
	}
	var afterDue int64
	var afterSeq uint64
	if f.AfterID != "" {
		if afterDue, afterSeq, err = ParseDelayID(f.AfterID); err != nil {
			return nil, 0, 0, err
		}
	}
	var out []DelayedMessage
	var derr error
	err = b.meta.ScanDelayed(topicName, max(f.FromMs, t.delayedFrom.Load()), f.ToMs, afterDue, afterSeq, func(e meta.DelayedEntry) bool {
		m, err := message.Decode(e.Payload)
		if err != nil {
			derr = err
			return false
		}
		if f.Key == "" || m.Key == f.Key {
			out = append(out, DelayedMessage{ID: FormatDelayID(e.DueMs, e.Seq), DueMs: e.DueMs, Message: m})
		}
		return len(out) < f.Limit
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, 0, 0, wrap(KindInternal, err, "list delayed messages of topic %q", topicName)
	}
	next, _ := b.delays.NextDue(topicName)
	return out, uint64(max(t.delayedPending.Load(), 0)), next, nil
}

// CancelDelayed cancels a pending delayed message of topic.
func (b *Broker) CancelDelayed(topicName, id string) error {
	t, err := b.topic(topicName)
	if err != nil {
		return err
	}
	dueMs, seq, err := ParseDelayID(id)
	if err != nil {
		return err
	}
	t.delayMu.Lock()
	defer t.delayMu.Unlock()
	found, err := b.meta.CancelDelayed(topicName, dueMs, seq)
	if err != nil {
		return wrap(KindInternal, err, "cancel delayed message %s", id)
	}
	if !found {
		return errorf(KindNotFound, "delayed message %s is not pending in topic %q: it was delivered, cancelled, or never existed", id, topicName)
	}
	t.delayedPending.Add(-1)
	b.trace.Add(meta.TraceEvent{Kind: trace.Cancelled, Topic: topicName, DelayID: id, TimeMs: b.Now().UnixMilli()})
	b.logger.Info("delayed message cancelled", "topic", topicName, "id", id)
	return nil
}

// validateDelay checks deliver-at times against the maximum delay.
func (b *Broker) validateDelay(msgs []*message.Message, nowMs int64) error {
	limit := nowMs + b.cfg.MaxDelay.Milliseconds()
	for i, m := range msgs {
		if m.DeliverAtMs > limit {
			return errorf(KindInvalid, "message %d: deliver-at %s is more than the maximum delay of %s ahead (the server's --max-delay; latest accepted now: %s)",
				i, formatDeliverAt(m.DeliverAtMs), b.cfg.MaxDelay, time.UnixMilli(limit).UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// formatDeliverAt renders a deliver-at time for an error: RFC 3339 while the year
// has four digits, else the milliseconds as given.
func formatDeliverAt(ms int64) string {
	if t := time.UnixMilli(ms).UTC(); t.Year() <= 9999 {
		return t.Format(time.RFC3339)
	}
	return fmt.Sprintf("%d ms after 1970", ms)
}

func (b *Broker) loadDelayed(t *topic) error {
	n, err := b.meta.CountDelayed(t.name)
	if err != nil {
		return fmt.Errorf("count delayed messages of %q: %w", t.name, err)
	}
	t.delayedPending.Store(int64(n))
	next, ok, err := b.meta.NextDelayed(t.name, 0)
	if err != nil {
		return fmt.Errorf("find next delayed message of %q: %w", t.name, err)
	}
	if ok {
		b.delays.Schedule(t.name, next)
	}
	return nil
}

// publishInternal stores msgs in t whatever its status and waits.
func (b *Broker) publishInternal(t *topic, msgs []*message.Message) ([]PublishResult, error) {
	type outcome struct {
		rs  []PublishResult
		err error
	}
	ch := make(chan outcome, 1)
	b.publishAsync(t, msgs, func(rs []PublishResult, err error) { ch <- outcome{rs, err} })
	o := <-ch
	return o.rs, o.err
}

// traceDue records that delayed messages became ordinary messages: on the
// delayed id (pointing to the offset) and on the offset, and indexes keys.
func (b *Broker) traceDue(topic string, msgs []*message.Message, rs []PublishResult, nowMs int64) {
	if b.trace == nil {
		return
	}
	for i, r := range rs {
		id := msgs[i].Headers[HeaderDelayID]
		b.trace.Add(
			meta.TraceEvent{Kind: trace.Due, Topic: topic, DelayID: id, Offset: r.Offset, TimeMs: nowMs},
			meta.TraceEvent{Kind: trace.Due, Topic: topic, DelayID: id, Offset: r.Offset, Count: 1, TimeMs: nowMs},
		)
		if msgs[i].Key != "" {
			b.trace.AddKeys(meta.TraceKeyEntry{Topic: topic, Key: msgs[i].Key, TimeMs: nowMs, Offset: r.Offset})
		}
	}
}
