package broker

import (
	"github.com/dmqio/dmq/internal/crashpoint"
	"time"

	"github.com/dmqio/dmq/internal/message"
)

// ResetTarget is where ResetGroup moves a group: exactly one of Earliest,
// Latest or a non-zero Time.
type ResetTarget struct {
	Earliest bool
	Latest   bool
	Time     time.Time
}

// ResetGroup moves every position of a group to the target. Messages from
// there on are delivered again (attempt 1); in-flight deliveries end, and
// acks that arrive for them later count for the new position. Dead letters
// stay.
func (b *Broker) ResetGroup(topicName, groupName string, to ResetTarget) (GroupInfo, error) {
	g, err := b.group(topicName, groupName)
	if err != nil {
		return GroupInfo{}, err
	}
	n := 0
	for _, set := range []bool{to.Earliest, to.Latest, !to.Time.IsZero()} {
		if set {
			n++
		}
	}
	if n != 1 {
		return GroupInfo{}, errorf(KindInvalid, "reset needs exactly one target: earliest, latest or a time")
	}
	var off uint64
	switch {
	case to.Earliest:
		off = g.t.log.First()
	case to.Latest:
		off = g.t.log.Next()
	default:
		if off, err = g.t.offsetAt(to.Time); err != nil {
			return GroupInfo{}, err
		}
	}
	g.mu.Lock()
	if g.mu.closed {
		g.mu.Unlock()
		return GroupInfo{}, ErrClosed
	}
	members := make([]string, 0, len(g.mu.cursors))
	for m := range g.mu.cursors {
		members = append(members, m)
	}
	if err := b.meta.ResetCursors(topicName, groupName, members, off); err != nil {
		g.mu.Unlock()
		return GroupInfo{}, wrap(KindInternal, err, "reset group %q", groupName)
	}
	crashpoint.Hit(crashpoint.ResetStored)
	for _, c := range g.mu.cursors {
		c.reset(off)
	}
	g.mu.Unlock()
	g.notify()
	b.logger.Info("group reset", "topic", topicName, "group", groupName, "offset", off)
	return g.describe(), nil
}

// offsetAt returns the offset of the first message published at or after
// ts, by binary search over the log (publish times grow with offsets, up to
// the jitter of concurrent publishers). It fails when messages published
// after ts were already removed by retention.
func (t *topic) offsetAt(ts time.Time) (uint64, error) {
	want := ts.UnixMilli()
	first, next := t.log.First(), t.log.Next()
	at := t.publishedAt
	if first < next && first > 0 {
		oldest, err := at(first)
		if err != nil {
			return 0, err
		}
		if want < oldest {
			return 0, errorf(KindPrecondition, "cannot reset to %s: messages before %s were removed by retention (reset to earliest to replay everything stored)",
				ts.UTC().Format(time.RFC3339), time.UnixMilli(oldest).UTC().Format(time.RFC3339))
		}
	}
	lo, hi := first, next
	for lo < hi {
		mid := lo + (hi-lo)/2
		pub, err := at(mid)
		if err != nil {
			return 0, err
		}
		if pub >= want {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// publishedAt returns when the message at off was published (Unix ms).
func (t *topic) publishedAt(off uint64) (int64, error) {
	p, err := t.log.Read(off)
	if err != nil {
		return 0, wrap(KindInternal, err, "read message %d of topic %q", off, t.name)
	}
	m, err := message.Decode(p)
	if err != nil {
		return 0, wrap(KindInternal, err, "decode message %d of topic %q", off, t.name)
	}
	return m.PublishedAtMs, nil
}
