package admin

import (
	"net/http"
	"time"

	"github.com/dmqio/dmq/internal/broker"
)

type minuteJSON struct {
	Minute   string `json:"minute"`
	MinuteMs int64  `json:"minute_ms"`
	Produced uint64 `json:"produced"`
	Consumed uint64 `json:"consumed"`
	Failures uint64 `json:"failures"`
	// Stored is null for minutes without a record.
	Stored *uint64 `json:"stored"`
}

// summaryJSON sums one counter over the minutes of a stats answer.
type summaryJSON struct {
	Total uint64 `json:"total"`
	Max   uint64 `json:"max"`
	Min   uint64 `json:"min"`
}

type statsJSON struct {
	Topic     string       `json:"topic"`
	From      string       `json:"from"`
	FromMs    int64        `json:"from_ms"`
	To        string       `json:"to"`
	ToMs      int64        `json:"to_ms"`
	Server    string       `json:"server,omitempty"`
	Client    string       `json:"client,omitempty"`
	Produced  summaryJSON  `json:"produced"`
	Consumed  summaryJSON  `json:"consumed"`
	Failures  summaryJSON  `json:"failures"`
	StoredNow uint64       `json:"stored_now"`
	Minutes   []minuteJSON `json:"minutes"`
	Groups    []groupStats `json:"groups"`
}

// groupStats is one group's backlog and oldest unacked age per minute.
type groupStats struct {
	Group              string            `json:"group"`
	Backlog            summaryJSON       `json:"backlog"`
	OldestUnackedAgeMs summaryJSON       `json:"oldest_unacked_age_ms"`
	Minutes            []groupMinuteJSON `json:"minutes"`
}

type groupMinuteJSON struct {
	Minute             string `json:"minute"`
	MinuteMs           int64  `json:"minute_ms"`
	Backlog            uint64 `json:"backlog"`
	OldestUnackedAgeMs uint64 `json:"oldest_unacked_age_ms"`
}

// statsRange reads the time range of a stats request: from and to (RFC
// 3339, both), or day (YYYY-MM-DD, UTC), or else today in UTC.
func statsRange(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	day := q.Get("day")
	switch {
	case q.Has("from") || q.Has("to"):
		if day != "" {
			return from, to, badRequest("give either day or from and to, not both")
		}
		if q.Get("from") == "" || q.Get("to") == "" {
			return from, to, badRequest("give both from and to (RFC 3339 times)")
		}
		if from, err = timeParam(r, "from"); err != nil {
			return from, to, err
		}
		to, err = timeParam(r, "to")
		return from, to, err
	case day != "":
		d, err := time.Parse(time.DateOnly, day)
		if err != nil {
			return from, to, badRequest("query parameter day=%q is not a date such as 2026-11-26", day)
		}
		return d, d.Add(24 * time.Hour), nil
	default:
		d := time.Now().UTC().Truncate(24 * time.Hour)
		return d, d.Add(24 * time.Hour), nil
	}
}

func (a *api) topicStats(r *http.Request) (int, any, error) {
	from, to, err := statsRange(r)
	if err != nil {
		return 0, nil, err
	}
	topic := r.PathValue("topic")
	q := broker.TopicStatsQuery{Topic: topic, From: from, To: to, Server: r.URL.Query().Get("server"), Client: r.URL.Query().Get("client")}
	ms, err := a.b.TopicStats(q)
	if err != nil {
		return 0, nil, err
	}
	out := statsJSON{
		Topic: topic, From: from.UTC().Format(timeFormat), FromMs: from.UnixMilli(),
		To: to.UTC().Format(timeFormat), ToMs: to.UnixMilli(), Server: q.Server, Client: q.Client,
		Minutes: make([]minuteJSON, len(ms)),
	}
	for i, m := range ms {
		out.Minutes[i] = minuteJSON{Minute: formatMs(m.MinuteMs), MinuteMs: m.MinuteMs,
			Produced: m.Produced, Consumed: m.Consumed, Failures: m.Failures}
		if m.StoredKnown {
			out.Minutes[i].Stored = &m.Stored
		}
	}
	p, c, f := broker.Summarize(ms)
	out.Produced, out.Consumed, out.Failures = summaryJSON(p), summaryJSON(c), summaryJSON(f)
	groups, err := a.b.GroupStats(q)
	if err != nil {
		return 0, nil, err
	}
	out.Groups = make([]groupStats, len(groups))
	for i, g := range groups {
		backlog, age := broker.SummarizeGroup(g.Minutes)
		gs := groupStats{Group: g.Group, Backlog: summaryJSON(backlog), OldestUnackedAgeMs: summaryJSON(age),
			Minutes: make([]groupMinuteJSON, len(g.Minutes))}
		for j, m := range g.Minutes {
			gs.Minutes[j] = groupMinuteJSON{Minute: formatMs(m.MinuteMs), MinuteMs: m.MinuteMs, Backlog: m.Backlog, OldestUnackedAgeMs: m.OldestUnackedAgeMs}
		}
		out.Groups[i] = gs
	}
	if ti, err := a.b.GetTopic(topic); err == nil {
		out.StoredNow = ti.NextOffset - ti.FirstOffset
	}
	return http.StatusOK, out, nil
}
