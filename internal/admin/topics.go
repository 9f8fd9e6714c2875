package admin

import (
	"net/http"
	"sort"
	"time"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/meta"
)

// topicJSON is a topic in API responses.
type topicJSON struct {
	Name             string `json:"name"`
	Environment      string `json:"env"`
	Status           string `json:"status"`
	Department       string `json:"department"`
	Owner            string `json:"owner"`
	Purpose          string `json:"purpose"`
	RequestedBy      string `json:"requested_by"`
	DecidedBy        string `json:"decided_by"`
	DecidedAt        string `json:"decided_at,omitempty"`
	DecidedAtMs      int64  `json:"decided_at_ms,omitempty"`
	DecisionReason   string `json:"decision_reason"`
	CreatedAt        string `json:"created_at"`
	CreatedAtMs      int64  `json:"created_at_ms"`
	DedupeWindowMs   int64  `json:"dedupe_window_ms"`
	StoredMessages   uint64 `json:"stored_messages"`
	FirstOffset      uint64 `json:"first_offset"`
	NextOffset       uint64 `json:"next_offset"`
	StoredBytes      int64  `json:"stored_bytes"`
	Segments         int    `json:"segments"`
	DelayedPending   uint64 `json:"delayed_pending"`
	NextDelayedDue   string `json:"next_delayed_due,omitempty"`
	NextDelayedDueMs int64  `json:"next_delayed_due_ms,omitempty"`
}

func topicOf(ti broker.TopicInfo) topicJSON {
	return topicJSON{
		Name: ti.Name, Environment: ti.Environment, Status: ti.Status,
		Department: ti.Department, Owner: ti.Owner, Purpose: ti.Purpose,
		RequestedBy: ti.RequestedBy, DecidedBy: ti.DecidedBy,
		DecidedAt: formatMs(ti.DecidedAtMs), DecidedAtMs: ti.DecidedAtMs, DecisionReason: ti.DecisionReason,
		CreatedAt: formatMs(ti.CreatedAtMs), CreatedAtMs: ti.CreatedAtMs, DedupeWindowMs: ti.DedupeWindowMs,
		StoredMessages: ti.NextOffset - ti.FirstOffset, FirstOffset: ti.FirstOffset, NextOffset: ti.NextOffset,
		StoredBytes: ti.StoredBytes, Segments: ti.Segments,
		DelayedPending: ti.DelayedPending, NextDelayedDue: formatMs(ti.NextDelayedDueMs), NextDelayedDueMs: ti.NextDelayedDueMs,
	}
}

// groupJSON is a consumer group in API responses.
type groupJSON struct {
	Topic          string   `json:"topic"`
	Name           string   `json:"name"`
	Mode           string   `json:"mode"`
	AckMode        string   `json:"ack_mode"`
	AckTimeout     string   `json:"ack_timeout"`
	AckTimeoutMs   int64    `json:"ack_timeout_ms"`
	MaxAttempts    uint32   `json:"max_attempts"`
	RetryBackoff   []string `json:"retry_backoff"`
	RetryBackoffMs []int64  `json:"retry_backoff_ms"`
	CreatedAt      string   `json:"created_at"`
	CreatedAtMs    int64    `json:"created_at_ms"`
	StartOffset    uint64   `json:"start_offset"`
	AckFloor       uint64   `json:"ack_floor"`
	Backlog        uint64   `json:"backlog"`
	InFlight       uint64   `json:"in_flight"`
	DeadLetters    uint64   `json:"dead_letters"`
	MembersOnline  int      `json:"members_online"`
	// OldestUnackedAgeMs is how long the oldest unacked message has waited.
	OldestUnackedAgeMs int64 `json:"oldest_unacked_age_ms"`
	// Abandoned: no member connected, oldest unacked message older than
	// abandoned_group_after (see broker.GroupInfo).
	Abandoned bool `json:"abandoned"`
}

func groupOf(gi broker.GroupInfo, now time.Time) groupJSON {
	g := groupJSON{
		Topic: gi.Topic, Name: gi.Name, Mode: gi.Mode, AckMode: gi.AckMode,
		AckTimeout: ms(gi.AckTimeoutMs).String(), AckTimeoutMs: gi.AckTimeoutMs,
		MaxAttempts: gi.MaxAttempts, RetryBackoff: []string{}, RetryBackoffMs: []int64{},
		CreatedAt: formatMs(gi.CreatedAtMs), CreatedAtMs: gi.CreatedAtMs, StartOffset: gi.StartOffset,
		AckFloor: gi.AckFloor, Backlog: gi.Backlog, InFlight: gi.InFlight,
		DeadLetters: gi.DeadLetters, MembersOnline: gi.MembersOnline,
		OldestUnackedAgeMs: gi.OldestUnackedAge(now).Milliseconds(), Abandoned: gi.Abandoned,
	}
	for _, d := range gi.RetryBackoffMs {
		g.RetryBackoff = append(g.RetryBackoff, ms(d).String())
		g.RetryBackoffMs = append(g.RetryBackoffMs, d)
	}
	return g
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// listTopics answers one page of the topics matching the filters, sorted
// by name, with the number of matching topics in all.
func (a *api) listTopics(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	if err := broker.CheckStatus(q.Get("status")); err != nil {
		return 0, nil, badRequest("query parameter %v", err)
	}
	ts := a.b.ListTopics(broker.TopicFilter{
		Department: q.Get("dept"), Owner: q.Get("owner"), Environment: q.Get("env"),
		Status: q.Get("status"), NameContains: q.Get("name"),
	})
	if p := principal(r); p != nil { // only what the caller may see
		visible := ts[:0]
		for _, t := range ts {
			if p.Sees(t.Name) {
				visible = append(visible, t)
			}
		}
		ts = visible
	}
	total := len(ts)
	after := q.Get("after")
	start := sort.Search(len(ts), func(i int) bool { return ts[i].Name > after })
	page := ts[start:min(start+limit, len(ts))]
	out := map[string]any{"topics": topicsOf(page), "total": total}
	if start+limit < len(ts) {
		out["next_after"] = page[len(page)-1].Name
	}
	return http.StatusOK, out, nil
}

func topicsOf(ts []broker.TopicInfo) []topicJSON {
	out := make([]topicJSON, len(ts))
	for i, ti := range ts {
		out[i] = topicOf(ti)
	}
	return out
}

type createTopicRequest struct {
	Name           string `json:"name"`
	Department     string `json:"department"`
	Owner          string `json:"owner"`
	Purpose        string `json:"purpose"`
	RequestedBy    string `json:"requested_by"`
	DedupeWindowMs int64  `json:"dedupe_window_ms"`
}

func (a *api) createTopic(r *http.Request) (int, any, error) {
	var req createTopicRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if p := principal(r); p != nil {
		if err := p.Allowed(auth.Manage, req.Name, ""); err != nil {
			return 0, nil, authError(err)
		}
		req.RequestedBy = who(r) // the authenticated caller, not what it says
	}
	ti, err := a.b.CreateTopic(meta.Topic{
		Name: req.Name, Department: req.Department, Owner: req.Owner, Purpose: req.Purpose,
		RequestedBy: req.RequestedBy, DedupeWindowMs: req.DedupeWindowMs,
	})
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, "topic.create", ti.Name, "status "+ti.Status)
	return http.StatusCreated, topicOf(ti), nil
}

// topicDetail is one topic with its groups.
type topicDetail struct {
	topicJSON
	Groups []groupJSON `json:"groups"`
}

func (a *api) getTopic(r *http.Request) (int, any, error) {
	name := r.PathValue("topic")
	ti, err := a.b.GetTopic(name)
	if err != nil {
		return 0, nil, err
	}
	gs, err := a.b.ListGroups(name)
	if err != nil {
		return 0, nil, err
	}
	d := topicDetail{topicJSON: topicOf(ti), Groups: make([]groupJSON, len(gs))}
	for i, gi := range gs {
		d.Groups[i] = groupOf(gi, a.b.Now())
	}
	return http.StatusOK, d, nil
}

type decisionRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// decide serves approve, reject and disable, which differ only in the
// broker call.
func (a *api) decide(action string, fn func(broker.Decision) (broker.TopicInfo, error)) handlerFunc {
	return func(r *http.Request) (int, any, error) {
		var req decisionRequest
		if err := decodeBody(r, &req); err != nil {
			return 0, nil, err
		}
		if principal(r) != nil {
			req.By = who(r) // the authenticated caller, not what it says
		}
		ti, err := fn(broker.Decision{Topic: r.PathValue("topic"), By: req.By, Reason: req.Reason})
		if err != nil {
			return 0, nil, err
		}
		a.audit(r, action, ti.Name, req.Reason)
		return http.StatusOK, topicOf(ti), nil
	}
}

func (a *api) getGroup(r *http.Request) (int, any, error) {
	gi, err := a.b.GetGroup(r.PathValue("topic"), r.PathValue("group"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, groupOf(gi, a.b.Now()), nil
}

type resetRequest struct {
	// To is "earliest", "latest" or an RFC 3339 time.
	To string `json:"to"`
}

func (a *api) deleteGroup(r *http.Request) (int, any, error) {
	topic, group := r.PathValue("topic"), r.PathValue("group")
	if err := a.b.DeleteGroup(topic, group); err != nil {
		return 0, nil, err
	}
	a.audit(r, "group.delete", topic+"/"+group, "")
	return http.StatusOK, map[string]string{"deleted": group}, nil
}

func (a *api) resetGroup(r *http.Request) (int, any, error) {
	var req resetRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	var to broker.ResetTarget
	switch req.To {
	case "earliest":
		to.Earliest = true
	case "latest":
		to.Latest = true
	default:
		t, err := time.Parse(time.RFC3339, req.To)
		if err != nil {
			return 0, nil, badRequest(`reset "to" is %q; want "earliest", "latest" or an RFC 3339 time such as 2026-11-26T08:00:00Z`, req.To)
		}
		to.Time = t
	}
	gi, err := a.b.ResetGroup(r.PathValue("topic"), r.PathValue("group"), to)
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, "group.reset", gi.Topic+"/"+gi.Name, "to "+req.To)
	return http.StatusOK, groupOf(gi, a.b.Now()), nil
}
