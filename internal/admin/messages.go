package admin

import (
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/message"
)

// messageJSON is a stored message in API responses. A body that is valid
// UTF-8 is sent as the string body; any other as body_base64 (standard
// encoding), so text payloads stay readable and binary ones survive.
type messageJSON struct {
	ID              string            `json:"id"`
	Key             string            `json:"key"`
	Headers         map[string]string `json:"headers"`
	Body            *string           `json:"body,omitempty"`
	BodyBase64      []byte            `json:"body_base64,omitempty"`
	ClientMessageID string            `json:"client_message_id,omitempty"`
	PublishedAt     string            `json:"published_at,omitempty"`
	PublishedAtMs   int64             `json:"published_at_ms,omitempty"`
}

func messageOf(id string, m message.Message) messageJSON {
	out := messageJSON{
		ID: id, Key: m.Key, Headers: m.Headers, ClientMessageID: m.ClientMessageID,
		PublishedAt: formatMs(m.PublishedAtMs), PublishedAtMs: m.PublishedAtMs,
	}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	if utf8.Valid(m.Body) {
		s := string(m.Body)
		out.Body = &s
	} else {
		out.BodyBase64 = m.Body
	}
	return out
}

type delayedJSON struct {
	ID      string      `json:"id"`
	Due     string      `json:"due"`
	DueMs   int64       `json:"due_ms"`
	Message messageJSON `json:"message"`
}

type delayedPageJSON struct {
	Messages  []delayedJSON `json:"messages"`
	Total     uint64        `json:"total"`
	NextDue   string        `json:"next_due,omitempty"`
	NextDueMs int64         `json:"next_due_ms,omitempty"`
	// NextAfter is the after parameter for the next page; empty on the last.
	NextAfter string `json:"next_after,omitempty"`
}

func (a *api) listDelayed(r *http.Request) (int, any, error) {
	from, err := timeParam(r, "from")
	if err != nil {
		return 0, nil, err
	}
	to, err := timeParam(r, "to")
	if err != nil {
		return 0, nil, err
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return 0, nil, badRequest("time range from %s to %s is empty", r.URL.Query().Get("from"), r.URL.Query().Get("to"))
	}
	limit, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	f := broker.DelayedFilter{Key: r.URL.Query().Get("key"), AfterID: r.URL.Query().Get("after"), Limit: limit}
	if !from.IsZero() {
		f.FromMs = from.UnixMilli()
	}
	if !to.IsZero() {
		f.ToMs = to.UnixMilli()
	}
	ds, total, next, err := a.b.ListDelayed(r.PathValue("topic"), f)
	if err != nil {
		return 0, nil, err
	}
	page := delayedPageJSON{Messages: make([]delayedJSON, len(ds)), Total: total, NextDue: formatMs(next), NextDueMs: next}
	for i, d := range ds {
		page.Messages[i] = delayedJSON{ID: d.ID, Due: formatMs(d.DueMs), DueMs: d.DueMs, Message: messageOf(d.ID, d.Message)}
	}
	if len(ds) == limit {
		page.NextAfter = ds[len(ds)-1].ID
	}
	return http.StatusOK, page, nil
}

func (a *api) cancelDelayed(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if err := a.b.CancelDelayed(r.PathValue("topic"), id); err != nil {
		return 0, nil, err
	}
	a.audit(r, "delayed.cancel", r.PathValue("topic")+"/"+id, "")
	return http.StatusOK, map[string]string{"cancelled": id}, nil
}

type deadLetterJSON struct {
	ID          string      `json:"id"`
	Member      string      `json:"member"`
	Attempts    uint32      `json:"attempts"`
	LastFailure string      `json:"last_failure"`
	DeadAt      string      `json:"dead_at"`
	DeadAtMs    int64       `json:"dead_at_ms"`
	Redriven    bool        `json:"redriven"`
	Message     messageJSON `json:"message"`
}

type deadLetterPageJSON struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	Total       uint64           `json:"total"`
	// NextAfter is the after parameter for the next page; empty on the last.
	NextAfter string `json:"next_after,omitempty"`
}

// parseID turns a message id (a decimal offset) into an offset.
func parseID(what, id string) (uint64, error) {
	off, err := broker.ParseOffset(id)
	if err != nil {
		return 0, badRequest("%s %q is not a DMQ message id (a decimal number)", what, id)
	}
	return off, nil
}

func (a *api) listDeadLetters(r *http.Request) (int, any, error) {
	limit, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	var from uint64
	if after := r.URL.Query().Get("after"); after != "" {
		off, err := parseID("query parameter after", after)
		if err != nil {
			return 0, nil, err
		}
		from = off + 1
	}
	ds, total, err := a.b.ListDeadLetters(r.PathValue("topic"), r.PathValue("group"), from, limit, r.URL.Query().Get("key"))
	if err != nil {
		return 0, nil, err
	}
	page := deadLetterPageJSON{DeadLetters: make([]deadLetterJSON, len(ds)), Total: total}
	for i, d := range ds {
		id := broker.FormatOffset(d.Offset)
		page.DeadLetters[i] = deadLetterJSON{
			ID: id, Member: d.Member, Attempts: d.Attempts, LastFailure: d.Reason,
			DeadAt: formatMs(d.DeadAtMs), DeadAtMs: d.DeadAtMs, Redriven: d.Redriven,
			Message: messageOf(id, d.Message),
		}
	}
	if len(ds) == limit {
		page.NextAfter = page.DeadLetters[len(ds)-1].ID
	}
	return http.StatusOK, page, nil
}

// selectorRequest picks dead letters: by ids, by key, or all (exactly one).
type selectorRequest struct {
	IDs []string `json:"ids"`
	Key string   `json:"key"`
	All bool     `json:"all"`
}

func (req selectorRequest) selector() (broker.DeadLetterSelector, error) {
	sel := broker.DeadLetterSelector{Key: req.Key, All: req.All}
	for _, id := range req.IDs {
		off, err := parseID("dead letter id", id)
		if err != nil {
			return sel, err
		}
		sel.Offsets = append(sel.Offsets, off)
	}
	return sel, nil
}

// deadLetterAction serves redrive and purge, which differ only in the
// broker call and the name of the count in the answer.
func (a *api) deadLetterAction(action string, fn func(topic, group string, sel broker.DeadLetterSelector) (int, error), counted string) handlerFunc {
	return func(r *http.Request) (int, any, error) {
		var req selectorRequest
		if err := decodeBody(r, &req); err != nil {
			return 0, nil, err
		}
		sel, err := req.selector()
		if err != nil {
			return 0, nil, err
		}
		n, err := fn(r.PathValue("topic"), r.PathValue("group"), sel)
		if err != nil {
			return 0, nil, err
		}
		a.audit(r, action, r.PathValue("topic")+"/"+r.PathValue("group"), fmt.Sprintf("%d %s", n, counted))
		return http.StatusOK, map[string]int{counted: n}, nil
	}
}
