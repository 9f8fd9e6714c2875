package broker

import (
	"slices"
	"sort"
	"time"

	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/stats"
)

// minutesLoop writes each finished minute's counters, with every topic's
// stored-message count, shortly after the minute ends; it also expires
// records older than the stats retention once an hour. It wakes on its
// timer and stops on quit, writing what it has.
func (b *Broker) minutesLoop() {
	lastExpiry := time.Time{}
	for {
		now := b.Now()
		next := time.UnixMilli(stats.Truncate(now.UnixMilli()) + stats.MinuteMs).Add(100 * time.Millisecond)
		select {
		case <-b.quit:
			b.flushMinutes(b.Now(), true)
			return
		case <-time.After(next.Sub(now)):
		}
		b.flushMinutes(b.Now(), false)
		if b.Now().Sub(lastExpiry) > time.Hour {
			lastExpiry = b.Now()
			before := b.Now().Add(-b.cfg.StatsRetention).UnixMilli()
			for _, t := range b.ListTopics(TopicFilter{}) {
				if err := b.meta.ExpireMinutes(t.Name, before); err != nil {
					b.logger.Error("expire per-minute stats", "topic", t.Name, "err", err)
				}
			}
			if b.trace != nil {
				b.expireTrace(b.Now())
			}
		}
	}
}

// flushMinutes writes finished minutes (all minutes at shutdown; records
// merge, so a partial minute adds up with the rest written later), and the
// stored totals as of the minute that just ended.
func (b *Broker) flushMinutes(now time.Time, all bool) {
	counts := b.stats.TakeFinished(all)
	stored := map[string]uint64{}
	var groups []meta.GroupMinute
	ts := b.topicList()
	// Counts of a topic deleted meanwhile are dropped, not written back.
	live := make(map[string]bool, len(ts))
	for _, t := range ts {
		live[t.name] = true
	}
	counts = slices.DeleteFunc(counts, func(c meta.MinuteCount) bool { return !live[c.Topic] })
	for _, t := range ts {
		stored[t.name] = t.log.Next() - t.log.First()
		for _, g := range t.groupList() {
			gi := g.describe()
			groups = append(groups, meta.GroupMinute{Topic: t.name, Group: gi.Name,
				Backlog: gi.Backlog, OldestUnackedAgeMs: gi.OldestUnackedAge(now).Milliseconds()})
		}
	}
	if err := b.meta.AddMinuteCounts(counts, stored, groups, stats.Truncate(now.UnixMilli())-stats.MinuteMs); err != nil {
		b.logger.Error("write per-minute stats", "err", err)
	}
}

// CounterTotals returns per-topic produced, consumed and failure counts
// since the broker started.
func (b *Broker) CounterTotals() map[string][3]uint64 { return b.stats.Totals() }

// MinuteStats is one minute of a topic's counters.
type MinuteStats struct {
	MinuteMs                     int64
	Produced, Consumed, Failures uint64
	// Stored is the topic's stored messages at the end of the minute (now,
	// for the current minute); StoredKnown is false for minutes without a
	// record (the broker was down, or the topic did not exist yet).
	Stored      uint64
	StoredKnown bool
}

// Summary is one counter over a range of minutes.
type Summary struct{ Total, Max, Min uint64 }

// Summarize returns each counter's total and its largest and smallest
// per-minute value over ms (quiet minutes count as zero).
func Summarize(ms []MinuteStats) (produced, consumed, failures Summary) {
	for i, m := range ms {
		produced.add(i, m.Produced)
		consumed.add(i, m.Consumed)
		failures.add(i, m.Failures)
	}
	return produced, consumed, failures
}

// add counts the value of the i-th minute.
func (s *Summary) add(i int, v uint64) {
	s.Total += v
	s.Max = max(s.Max, v)
	if i == 0 || v < s.Min {
		s.Min = v
	}
}

// TopicStatsQuery selects a topic's per-minute counters.
type TopicStatsQuery struct {
	Topic          string
	From, To       time.Time
	Server, Client string
}

// minutes checks a stats query and returns its first minute, its end
// (capped at now) and the number of minutes.
func (q TopicStatsQuery) minutes(now time.Time, retention time.Duration) (from, to int64, n int, err error) {
	switch {
	case q.From.IsZero() || q.To.IsZero() || !q.To.After(q.From):
		return 0, 0, 0, errorf(KindInvalid, "stats need a time range with from before to")
	case q.To.Sub(q.From) > 31*24*time.Hour:
		return 0, 0, 0, errorf(KindInvalid, "stats range of %s is longer than 31 days", q.To.Sub(q.From).Round(time.Hour))
	case q.From.Before(now.Add(-retention)):
		return 0, 0, 0, errorf(KindInvalid, "stats start %s is beyond the retention of %s", q.From.UTC().Format(time.RFC3339), retention)
	}
	from, to = stats.Truncate(q.From.UnixMilli()), min(q.To.UnixMilli(), now.UnixMilli()+1)
	n = int((to - from + stats.MinuteMs - 1) / stats.MinuteMs)
	return from, to, max(n, 0), nil
}

// TopicStats returns one entry per minute of [From, To) (up to now), with
// the counters summed over servers and clients unless narrowed.
func (b *Broker) TopicStats(q TopicStatsQuery) ([]MinuteStats, error) {
	if _, err := b.topic(q.Topic); err != nil {
		return nil, err
	}
	from, to, n, err := q.minutes(b.Now(), b.cfg.StatsRetention)
	if err != nil {
		return nil, err
	}
	out := make([]MinuteStats, n)
	for i := range out {
		out[i].MinuteMs = from + int64(i)*stats.MinuteMs
	}
	add := func(c meta.MinuteCount) {
		if c.MinuteMs < from || c.MinuteMs >= to || (q.Server != "" && c.Server != q.Server) || (q.Client != "" && c.Client != q.Client) {
			return
		}
		m := &out[(c.MinuteMs-from)/stats.MinuteMs]
		m.Produced += c.Produced
		m.Consumed += c.Consumed
		m.Failures += c.Failures
	}
	if err := b.meta.ScanMinuteCounts(q.Topic, from, to, add); err != nil {
		return nil, wrap(KindInternal, err, "read per-minute stats of %q", q.Topic)
	}
	for _, c := range b.stats.Pending(q.Topic) {
		add(c)
	}
	if err := b.meta.ScanStoredByMinute(q.Topic, from, to, func(minuteMs int64, stored uint64) {
		m := &out[(minuteMs-from)/stats.MinuteMs]
		m.Stored, m.StoredKnown = stored, true
	}); err != nil {
		return nil, wrap(KindInternal, err, "read stored counts of %q", q.Topic)
	}
	if cur := stats.Truncate(b.Now().UnixMilli()); cur >= from && cur < to {
		if ti, err := b.GetTopic(q.Topic); err == nil {
			m := &out[(cur-from)/stats.MinuteMs]
			m.Stored, m.StoredKnown = ti.NextOffset-ti.FirstOffset, true
		}
	}
	return out, nil
}

// GroupMinute is a group's backlog and the age of its oldest unacked
// message at the end of one minute (now, for the current minute).
type GroupMinute struct {
	MinuteMs           int64
	Backlog            uint64
	OldestUnackedAgeMs uint64
}

// GroupSeries is one group's state minute by minute.
type GroupSeries struct {
	Group   string
	Minutes []GroupMinute
}

// GroupStats returns, for each group of the topic (and groups deleted since
// that still have records), one entry per minute of the query's range;
// minutes before a group's first record are zero. Server and Client do not
// apply: a group's backlog belongs to the topic.
func (b *Broker) GroupStats(q TopicStatsQuery) ([]GroupSeries, error) {
	if _, err := b.topic(q.Topic); err != nil {
		return nil, err
	}
	now := b.Now()
	from, to, n, err := q.minutes(now, b.cfg.StatsRetention)
	if err != nil {
		return nil, err
	}
	series := map[string][]GroupMinute{}
	get := func(group string) []GroupMinute {
		s, ok := series[group]
		if !ok {
			s = make([]GroupMinute, n)
			for i := range s {
				s[i].MinuteMs = from + int64(i)*stats.MinuteMs
			}
			series[group] = s
		}
		return s
	}
	if err := b.meta.ScanGroupMinutes(q.Topic, from, to, func(g meta.GroupMinute) {
		get(g.Group)[(g.MinuteMs-from)/stats.MinuteMs] = GroupMinute{MinuteMs: g.MinuteMs, Backlog: g.Backlog, OldestUnackedAgeMs: uint64(max(g.OldestUnackedAgeMs, 0))}
	}); err != nil {
		return nil, wrap(KindInternal, err, "read group stats of %q", q.Topic)
	}
	gs, err := b.ListGroups(q.Topic)
	if err != nil {
		return nil, err
	}
	cur := stats.Truncate(now.UnixMilli())
	for _, g := range gs {
		s := get(g.Name)
		if cur >= from && cur < to {
			s[(cur-from)/stats.MinuteMs] = GroupMinute{MinuteMs: cur, Backlog: g.Backlog, OldestUnackedAgeMs: uint64(g.OldestUnackedAge(now).Milliseconds())}
		}
	}
	out := make([]GroupSeries, 0, len(series))
	for name, s := range series {
		out = append(out, GroupSeries{Group: name, Minutes: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// SummarizeGroup returns the backlog's and the oldest unacked age's total,
// max and min over the minutes of one group.
func SummarizeGroup(ms []GroupMinute) (backlog, oldestAge Summary) {
	for i, m := range ms {
		backlog.add(i, m.Backlog)
		oldestAge.add(i, m.OldestUnackedAgeMs)
	}
	return backlog, oldestAge
}
