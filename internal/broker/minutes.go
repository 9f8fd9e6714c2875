package broker

import (
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
		now := time.Now()
		next := time.UnixMilli(stats.Truncate(now.UnixMilli()) + stats.MinuteMs).Add(100 * time.Millisecond)
		select {
		case <-b.quit:
			b.flushMinutes(time.Now(), true)
			return
		case <-time.After(next.Sub(now)):
		}
		b.flushMinutes(time.Now(), false)
		if time.Since(lastExpiry) > time.Hour {
			lastExpiry = time.Now()
			before := time.Now().Add(-b.cfg.StatsRetention).UnixMilli()
			for _, t := range b.ListTopics(TopicFilter{}) {
				if err := b.meta.ExpireMinutes(t.Name, before); err != nil {
					b.logger.Error("expire per-minute stats", "topic", t.Name, "err", err)
				}
			}
			if b.trace != nil {
				b.expireTrace(time.Now())
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
	for _, t := range b.ListTopics(TopicFilter{}) {
		stored[t.Name] = t.NextOffset - t.FirstOffset
	}
	if err := b.meta.AddMinuteCounts(counts, stored, stats.Truncate(now.UnixMilli())-stats.MinuteMs); err != nil {
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
	Stored                       uint64
}

// Summary is one counter over a range of minutes.
type Summary struct{ Total, Max, Min uint64 }

// Summarize returns each counter's total and its largest and smallest
// per-minute value over ms (quiet minutes count as zero).
func Summarize(ms []MinuteStats) (produced, consumed, failures Summary) {
	for i, m := range ms {
		for _, p := range []struct {
			sum *Summary
			v   uint64
		}{{&produced, m.Produced}, {&consumed, m.Consumed}, {&failures, m.Failures}} {
			p.sum.Total += p.v
			p.sum.Max = max(p.sum.Max, p.v)
			if i == 0 || p.v < p.sum.Min {
				p.sum.Min = p.v
			}
		}
	}
	return produced, consumed, failures
}

// TopicStatsQuery selects a topic's per-minute counters.
type TopicStatsQuery struct {
	Topic          string
	From, To       time.Time
	Server, Client string
}

// TopicStats returns one entry per minute of [From, To) (up to now), with
// the counters summed over servers and clients unless narrowed.
func (b *Broker) TopicStats(q TopicStatsQuery) ([]MinuteStats, error) {
	if _, err := b.topic(q.Topic); err != nil {
		return nil, err
	}
	from, to := stats.Truncate(q.From.UnixMilli()), q.To.UnixMilli()
	now := time.Now()
	switch {
	case q.From.IsZero() || q.To.IsZero() || to <= from:
		return nil, errorf(KindInvalid, "stats need a time range with from before to")
	case q.To.Sub(q.From) > 31*24*time.Hour:
		return nil, errorf(KindInvalid, "stats range of %s is longer than 31 days", q.To.Sub(q.From).Round(time.Hour))
	case q.From.Before(now.Add(-b.cfg.StatsRetention)):
		return nil, errorf(KindInvalid, "stats start %s is beyond the retention of %s", q.From.UTC().Format(time.RFC3339), b.cfg.StatsRetention)
	}
	to = min(to, now.UnixMilli()+1)
	n := int((to - from + stats.MinuteMs - 1) / stats.MinuteMs)
	out := make([]MinuteStats, max(n, 0))
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
		out[(minuteMs-from)/stats.MinuteMs].Stored = stored
	}); err != nil {
		return nil, wrap(KindInternal, err, "read stored counts of %q", q.Topic)
	}
	return out, nil
}
