package broker

import (
	"sort"
	"strings"
	"time"

	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/trace"
)

// Origin names who published: the producer's client id and address.
type Origin struct {
	Client, Addr string
}

// runs calls fn for each run of consecutive offsets in offs (in order),
// each at most meta.MaxTraceRun long.
func runs(offs []uint64, fn func(first uint64, n int)) {
	for i := 0; i < len(offs); {
		j := i + 1
		for j < len(offs) && offs[j] == offs[j-1]+1 && j-i < meta.MaxTraceRun {
			j++
		}
		fn(offs[i], j-i)
		i = j
	}
}

// tracePublished records a stored publish: ranges of offsets, delayed
// messages scheduled, and the business key index.
func (b *Broker) tracePublished(topic string, from Origin, msgs []*message.Message, rs []PublishResult, nowMs int64) {
	if b.trace == nil {
		return
	}
	var offs []uint64
	var keys []meta.TraceKeyEntry
	for i, r := range rs {
		switch {
		case r.Duplicate:
		case r.DelayID != "":
			b.trace.Add(meta.TraceEvent{Kind: trace.Scheduled, Topic: topic, DelayID: r.DelayID, TimeMs: nowMs, Client: from.Client, Addr: from.Addr,
				Reason: "due " + time.UnixMilli(msgs[i].DeliverAtMs).UTC().Format(time.RFC3339Nano)})
		default:
			offs = append(offs, r.Offset)
			if msgs[i].Key != "" {
				keys = append(keys, meta.TraceKeyEntry{Topic: topic, Key: msgs[i].Key, TimeMs: nowMs, Offset: r.Offset})
			}
		}
	}
	runs(offs, func(first uint64, n int) {
		b.trace.Add(meta.TraceEvent{Kind: trace.Published, Topic: topic, Offset: first, Count: uint32(n), TimeMs: nowMs, Client: from.Client, Addr: from.Addr})
	})
	if len(keys) > 0 {
		b.trace.AddKeys(keys...)
	}
}

// traceRuns records one event per run of offsets.
func (b *Broker) traceRuns(kind, topic, group, client string, attempt uint32, offs []uint64, nowMs int64) {
	if b.trace == nil || len(offs) == 0 {
		return
	}
	runs(offs, func(first uint64, n int) {
		b.trace.Add(meta.TraceEvent{Kind: kind, Topic: topic, Offset: first, Count: uint32(n), TimeMs: nowMs, Group: group, Client: client, Attempt: attempt})
	})
}

// TraceOf returns the events of one message by id (an offset, or a delayed
// id "d..."), in time order.
func (b *Broker) TraceOf(topicName, id string) ([]meta.TraceEvent, error) {
	if _, err := b.topic(topicName); err != nil {
		return nil, err
	}
	b.flushTrace()
	var events []meta.TraceEvent
	if strings.HasPrefix(id, "d") {
		if _, _, err := ParseDelayID(id); err != nil {
			return nil, err
		}
		es, err := b.meta.TraceOfDelayed(topicName, id)
		if err != nil {
			return nil, wrap(KindInternal, err, "read trace of %s", id)
		}
		events = es
		for _, e := range es {
			if e.Kind == trace.Due {
				more, err := b.meta.TraceOf(topicName, e.Offset)
				if err != nil {
					return nil, wrap(KindInternal, err, "read trace of %s", id)
				}
				for _, m := range more {
					if m.Kind != trace.Due { // the log side of the same step
						events = append(events, m)
					}
				}
			}
		}
	} else {
		off, err := ParseOffset(id)
		if err != nil {
			return nil, err
		}
		if events, err = b.meta.TraceOf(topicName, off); err != nil {
			return nil, wrap(KindInternal, err, "read trace of %s", id)
		}
	}
	if len(events) == 0 {
		return nil, errorf(KindNotFound, "no trace of message %s in topic %q (unknown id, or older than the trace retention)", id, topicName)
	}
	// Time order; within a millisecond, a message enters (published,
	// scheduled, due) before anything happens to it, then in record order.
	enters := func(e meta.TraceEvent) bool {
		return e.Kind == trace.Published || e.Kind == trace.Scheduled || e.Kind == trace.Due
	}
	sort.SliceStable(events, func(i, j int) bool {
		a, b := events[i], events[j]
		if a.TimeMs != b.TimeMs {
			return a.TimeMs < b.TimeMs
		}
		if enters(a) != enters(b) {
			return enters(a)
		}
		return a.Seq < b.Seq
	})
	return events, nil
}

// MessageTrace is the trace of one message found by business key.
type MessageTrace struct {
	Offset uint64
	Events []meta.TraceEvent
}

// TraceByKey returns the traces of a topic's messages with a business key
// published in [from, to), at most limit messages, oldest first.
func (b *Broker) TraceByKey(topicName, key string, from, to time.Time, limit int) ([]MessageTrace, error) {
	if _, err := b.topic(topicName); err != nil {
		return nil, err
	}
	switch {
	case key == "":
		return nil, errorf(KindInvalid, "a trace search needs a business key")
	case from.IsZero() || to.IsZero() || !to.After(from):
		return nil, errorf(KindInvalid, "a trace search needs a time range with from before to")
	case to.Sub(from) > 7*24*time.Hour:
		return nil, errorf(KindInvalid, "a trace search covers at most 7 days, not %s", to.Sub(from).Round(time.Hour))
	}
	if limit <= 0 || limit > 100 {
		limit = min(max(limit, 20), 100)
	}
	b.flushTrace()
	entries, err := b.meta.TraceKeys(topicName, key, from.UnixMilli(), to.UnixMilli(), limit)
	if err != nil {
		return nil, wrap(KindInternal, err, "search trace of key %q", key)
	}
	out := make([]MessageTrace, 0, len(entries))
	for _, e := range entries {
		events, err := b.TraceOf(topicName, FormatOffset(e.Offset))
		if err != nil && KindOf(err) != KindNotFound {
			return nil, err
		}
		out = append(out, MessageTrace{Offset: e.Offset, Events: events})
	}
	return out, nil
}

// expireTrace drops trace events older than the trace retention.
func (b *Broker) expireTrace(now time.Time) {
	before := now.Add(-b.cfg.TraceRetention)
	for _, ti := range b.ListTopics(TopicFilter{}) {
		t, err := b.topic(ti.Name)
		if err != nil {
			continue
		}
		bound := t.log.First()
		if off, err := t.offsetAt(before); err == nil {
			bound = max(bound, off)
		}
		if err := b.meta.ExpireTrace(ti.Name, bound, before.UnixMilli()); err != nil {
			b.logger.Error("expire trace", "topic", ti.Name, "err", err)
		}
	}
}

// flushTrace writes the buffered trace events and waits until a read sees them.
func (b *Broker) flushTrace() {
	if b.trace == nil {
		return
	}
	b.trace.Flush()
	if err := b.store.Settle(); err != nil {
		b.logger.Warn("trace: the latest events may be missing from this answer", "err", err)
	}
}
