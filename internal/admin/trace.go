package admin

import (
	"net/http"
	"strconv"

	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/meta"
)

// traceEventJSON is one step in a message's life.
type traceEventJSON struct {
	Kind    string `json:"kind"`
	Time    string `json:"time"`
	TimeMs  int64  `json:"time_ms"`
	Offset  uint64 `json:"offset"`
	Group   string `json:"group,omitempty"`
	Client  string `json:"client,omitempty"`
	Addr    string `json:"addr,omitempty"`
	Attempt uint32 `json:"attempt,omitempty"`
	Reason  string `json:"reason,omitempty"`
	DelayID string `json:"delay_id,omitempty"`
}

func traceEventsOf(es []meta.TraceEvent) []traceEventJSON {
	out := make([]traceEventJSON, len(es))
	for i, e := range es {
		out[i] = traceEventJSON{Kind: e.Kind, Time: formatMs(e.TimeMs), TimeMs: e.TimeMs, Offset: e.Offset,
			Group: e.Group, Client: e.Client, Addr: e.Addr, Attempt: e.Attempt, Reason: e.Reason, DelayID: e.DelayID}
	}
	return out
}

type messageTraceJSON struct {
	MessageID string           `json:"message_id"`
	Events    []traceEventJSON `json:"events"`
}

func (a *api) traceMessage(r *http.Request) (int, any, error) {
	topic, id := r.PathValue("topic"), r.PathValue("id")
	es, err := a.b.TraceOf(topic, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"topic": topic, "message_id": id, "events": traceEventsOf(es)}, nil
}

func (a *api) traceByKey(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	topic, key := r.PathValue("topic"), q.Get("key")
	if key == "" {
		return 0, nil, badRequest("query parameter key (the business key) is required")
	}
	if q.Get("from") == "" || q.Get("to") == "" {
		return 0, nil, badRequest("give both from and to (RFC 3339 times): a trace search needs a time range")
	}
	from, err := timeParam(r, "from")
	if err != nil {
		return 0, nil, err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return 0, nil, err
	}
	limit := 20
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 100 {
			return 0, nil, badRequest("query parameter limit=%q must be a number from 1 to 100", s)
		}
	}
	ms, err := a.b.TraceByKey(topic, key, from, to, limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]messageTraceJSON, len(ms))
	for i, m := range ms {
		out[i] = messageTraceJSON{MessageID: broker.FormatOffset(m.Offset), Events: traceEventsOf(m.Events)}
	}
	return http.StatusOK, map[string]any{"topic": topic, "key": key, "messages": out}, nil
}
