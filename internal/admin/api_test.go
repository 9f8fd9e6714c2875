package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// httpAPI calls the JSON admin API of a test server.
type httpAPI struct {
	t    *testing.T
	base string
}

func newAPI(t *testing.T, s *dmqtest.Server) httpAPI {
	return httpAPI{t: t, base: "http://" + s.HTTPAddr() + "/api/v1"}
}

// do sends body (nil: none; string: raw; anything else: JSON-encoded) and
// returns the status and raw response body. Every answer must be JSON.
func (a httpAPI) do(method, path string, body any) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		a.t.Fatalf("%s %s: Content-Type %q, want application/json (body %s)", method, path, ct, out)
	}
	if !json.Valid(out) {
		a.t.Fatalf("%s %s: body is not JSON: %s", method, path, out)
	}
	return resp.StatusCode, out
}

// call expects status want and decodes the answer into out (when not nil).
func (a httpAPI) call(method, path string, body any, want int, out any) {
	a.t.Helper()
	code, raw := a.do(method, path, body)
	if code != want {
		a.t.Fatalf("%s %s = %d %s, want %d", method, path, code, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fail expects an error answer with status and code, and a message that
// contains msgPart.
func (a httpAPI) fail(method, path string, body any, status int, code, msgPart string) {
	a.t.Helper()
	var e apiErr
	a.call(method, path, body, status, &e)
	if e.Error.Code != code || !strings.Contains(e.Error.Message, msgPart) {
		a.t.Fatalf("%s %s: error %+v, want code %s and a message containing %q", method, path, e.Error, code, msgPart)
	}
}

type topic struct {
	Name           string  `json:"name"`
	Env            string  `json:"env"`
	Status         string  `json:"status"`
	Department     string  `json:"department"`
	Owner          string  `json:"owner"`
	Purpose        string  `json:"purpose"`
	RequestedBy    string  `json:"requested_by"`
	DecidedBy      string  `json:"decided_by"`
	DecidedAt      string  `json:"decided_at"`
	DecidedAtMs    int64   `json:"decided_at_ms"`
	DecisionReason string  `json:"decision_reason"`
	CreatedAt      string  `json:"created_at"`
	CreatedAtMs    int64   `json:"created_at_ms"`
	StoredMessages uint64  `json:"stored_messages"`
	FirstOffset    uint64  `json:"first_offset"`
	NextOffset     uint64  `json:"next_offset"`
	StoredBytes    int64   `json:"stored_bytes"`
	Segments       int     `json:"segments"`
	DelayedPending uint64  `json:"delayed_pending"`
	Groups         []group `json:"groups"`
}

type group struct {
	Name           string   `json:"name"`
	Mode           string   `json:"mode"`
	AckMode        string   `json:"ack_mode"`
	AckTimeout     string   `json:"ack_timeout"`
	AckTimeoutMs   int64    `json:"ack_timeout_ms"`
	MaxAttempts    uint32   `json:"max_attempts"`
	RetryBackoff   []string `json:"retry_backoff"`
	RetryBackoffMs []int64  `json:"retry_backoff_ms"`
	AckFloor       uint64   `json:"ack_floor"`
	Backlog        uint64   `json:"backlog"`
	InFlight       uint64   `json:"in_flight"`
	DeadLetters    uint64   `json:"dead_letters"`
	MembersOnline  int      `json:"members_online"`
}

type message struct {
	ID      string            `json:"id"`
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Body    *string           `json:"body"`
}

func (a httpAPI) topicNames(query string) []string {
	a.t.Helper()
	var resp struct{ Topics []topic }
	a.call("GET", "/topics"+query, nil, http.StatusOK, &resp)
	names := []string{}
	for _, tp := range resp.Topics {
		names = append(names, tp.Name)
	}
	return names
}

func (a httpAPI) group(topic, name string) group {
	a.t.Helper()
	var g group
	a.call("GET", "/topics/"+topic+"/groups/"+name, nil, http.StatusOK, &g)
	return g
}

// A prod topic is requested over HTTP, waits for approval, cannot be
// approved by its requester, is approved by someone else, and shows up
// under the list filters with its groups.
func TestTopicRegistryOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const name = "prod.shop.orders"

	var tp topic
	api.call("POST", "/topics", map[string]string{"name": name, "department": "shop", "owner": "alice",
		"purpose": "order events", "requested_by": "alice"}, http.StatusCreated, &tp)
	if tp.Name != name || tp.Status != "pending" || tp.Env != "prod" || tp.Department != "shop" || tp.Owner != "alice" ||
		tp.Purpose != "order events" || tp.RequestedBy != "alice" || tp.DecidedBy != "" || tp.DecidedAt != "" || tp.CreatedAtMs == 0 {
		t.Fatalf("created topic = %+v, want pending prod topic of shop requested by alice", tp)
	}
	if created, err := time.Parse(time.RFC3339, tp.CreatedAt); err != nil || created.UnixMilli() != tp.CreatedAtMs {
		t.Fatalf("created_at %q (%v) does not match created_at_ms %d", tp.CreatedAt, err, tp.CreatedAtMs)
	}
	api.fail("POST", "/topics", map[string]string{"name": name}, http.StatusConflict, "AlreadyExists", "already exists")
	api.fail("POST", "/topics/"+name+"/approve", map[string]string{"by": "alice"}, http.StatusForbidden, "PermissionDenied", "cannot approve it too")
	api.fail("POST", "/topics/"+name+"/approve", map[string]string{"reason": "ok"}, http.StatusBadRequest, "InvalidArgument", "who decides")
	api.fail("POST", "/topics/"+name+"/disable", map[string]string{"by": "bob"}, http.StatusConflict, "FailedPrecondition", "is pending")

	api.call("POST", "/topics/"+name+"/approve", map[string]string{"by": "bob", "reason": "reviewed"}, http.StatusOK, &tp)
	if tp.Status != "approved" || tp.DecidedBy != "bob" || tp.DecisionReason != "reviewed" || tp.DecidedAtMs == 0 || tp.DecidedAt == "" {
		t.Fatalf("approved topic = %+v, want approved by bob with the reason and time", tp)
	}
	// A test topic is approved by policy on creation.
	api.call("POST", "/topics", map[string]string{"name": "test.pay.refunds", "department": "pay", "owner": "carol"}, http.StatusCreated, &tp)
	if tp.Status != "approved" || tp.DecidedBy != "policy" {
		t.Fatalf("test topic = %+v, want approved by policy", tp)
	}
	api.call("POST", "/topics", map[string]string{"name": "prod.pay.charges", "department": "pay", "owner": "carol", "requested_by": "carol"}, http.StatusCreated, nil)

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"prod.pay.charges", name, "test.pay.refunds"}},
		{"?dept=pay", []string{"prod.pay.charges", "test.pay.refunds"}},
		{"?owner=alice", []string{name}},
		{"?env=prod", []string{"prod.pay.charges", name}},
		{"?status=pending", []string{"prod.pay.charges"}},
		{"?status=approved&env=prod", []string{name}},
		{"?name=refund", []string{"test.pay.refunds"}},
		{"?dept=nobody", []string{}},
	} {
		t.Run("list"+tc.query, func(t *testing.T) {
			api := httpAPI{t: t, base: api.base}
			if got := api.topicNames(tc.query); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("GET /topics%s = %v, want %v", tc.query, got, tc.want)
			}
		})
	}
	api.call("POST", "/topics/prod.pay.charges/reject", map[string]string{"by": "bob", "reason": "use payments"}, http.StatusOK, &tp)
	if tp.Status != "rejected" || tp.DecisionReason != "use payments" {
		t.Fatalf("rejected topic = %+v", tp)
	}

	// Groups and stored messages show on the topic.
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "billing", MaxAttempts: 3,
		RetryBackoff: []time.Duration{time.Second, 5 * time.Second}, AckTimeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "audit", Mode: client.Broadcast}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, name, &client.Message{Body: []byte("a")}, &client.Message{Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	api.call("GET", "/topics/"+name, nil, http.StatusOK, &tp)
	if tp.StoredMessages != 2 || tp.NextOffset != 2 || tp.FirstOffset != 0 || tp.StoredBytes == 0 || tp.Segments < 1 || len(tp.Groups) != 2 {
		t.Fatalf("topic = %+v, want 2 stored messages and 2 groups", tp)
	}
	audit, billing := tp.Groups[0], tp.Groups[1]
	if audit.Name != "audit" || audit.Mode != "broadcast" || audit.AckMode != "business" || audit.MaxAttempts != 16 {
		t.Errorf("audit = %+v, want broadcast with business ack and 16 attempts", audit)
	}
	if billing.Name != "billing" || billing.Mode != "cluster" || billing.MaxAttempts != 3 || billing.AckTimeout != "2s" || billing.AckTimeoutMs != 2000 ||
		fmt.Sprint(billing.RetryBackoff) != "[1s 5s]" || fmt.Sprint(billing.RetryBackoffMs) != "[1000 5000]" || billing.Backlog != 2 || billing.MembersOnline != 0 {
		t.Errorf("billing = %+v, want cluster group with 3 attempts, 2s ack timeout, retry 1s,5s and a backlog of 2", billing)
	}
}

// Errors come as JSON with a code and a status from the broker's error
// kind; malformed bodies and parameters are 400s; unknown routes are JSON
// 404s and wrong methods JSON 405s.
func TestErrorsOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	api.call("POST", "/topics", map[string]string{"name": "test.err.orders"}, http.StatusCreated, nil)

	code, raw := api.do("GET", "/topics/test.nope.x", nil)
	if want := `{"error":{"code":"NotFound","message":"topic \"test.nope.x\" does not exist"}}`; code != http.StatusNotFound || compact(t, raw) != want {
		t.Fatalf("GET unknown topic = %d %s, want 404 %s", code, raw, want)
	}
	big := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code, msg          string
	}{
		{"bad JSON", "POST", "/topics", `{"name":`, 400, "InvalidArgument", "not valid JSON"},
		{"not an object", "POST", "/topics", `[1,2]`, 400, "InvalidArgument", "must be a JSON object, not array"},
		{"wrong type", "POST", "/topics", `{"name": 7}`, 400, "InvalidArgument", `field "name" must be string`},
		{"unknown field", "POST", "/topics", `{"name":"test.err.x","colour":"red"}`, 400, "InvalidArgument", "colour"},
		{"two objects", "POST", "/topics", `{"name":"test.err.x"} {}`, 400, "InvalidArgument", "exactly one JSON object"},
		{"empty body", "POST", "/topics/test.err.orders/disable", nil, 400, "InvalidArgument", "empty"},
		{"body over 1 MiB", "POST", "/topics", big, 413, "InvalidArgument", "larger than 1048576 bytes"},
		{"bad topic name", "POST", "/topics", `{"name":"Orders"}`, 400, "InvalidArgument", "env.dept.name"},
		{"unknown group", "GET", "/topics/test.err.orders/groups/nope", nil, 404, "NotFound", `group "nope"`},
		{"stats bad from", "GET", "/topics/test.err.orders/stats?from=yesterday&to=2026-01-01T00:00:00Z", nil, 400, "InvalidArgument", "RFC 3339"},
		{"stats from without to", "GET", "/topics/test.err.orders/stats?from=2026-01-01T00:00:00Z", nil, 400, "InvalidArgument", "both from and to"},
		{"stats bad day", "GET", "/topics/test.err.orders/stats?day=26.11.2026", nil, 400, "InvalidArgument", "not a date"},
		{"stats day and range", "GET", "/topics/test.err.orders/stats?day=2026-11-26&from=x&to=y", nil, 400, "InvalidArgument", "not both"},
		{"delayed bad limit", "GET", "/topics/test.err.orders/delayed?limit=0", nil, 400, "InvalidArgument", "limit"},
		{"delayed bad after", "GET", "/topics/test.err.orders/delayed?after=zzz", nil, 400, "InvalidArgument", "not a delayed message id"},
		{"cancel bad id", "DELETE", "/topics/test.err.orders/delayed/123", nil, 400, "InvalidArgument", "not a delayed message id"},
		{"cancel unknown", "DELETE", "/topics/test.err.orders/delayed/d1764151200000-k3x9", nil, 404, "NotFound", "not pending"},
		{"clients bad online", "GET", "/clients?online=maybe", nil, 400, "InvalidArgument", "true or false"},
		{"clients group without topic", "GET", "/clients?group=g", nil, 400, "InvalidArgument", "needs its topic"},
		{"delete unknown client", "DELETE", "/clients/ghost", nil, 404, "NotFound", `client "ghost"`},
		{"reset bad target", "POST", "/topics/test.err.orders/groups/g/reset", `{"to":"tomorrow"}`, 400, "InvalidArgument", "earliest"},
		{"unknown endpoint", "GET", "/nothing/here", nil, 404, "NotFound", "no API endpoint GET /api/v1/nothing/here"},
		{"wrong method", "PUT", "/topics", `{}`, 405, "MethodNotAllowed", "PUT is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpAPI{t: t, base: api.base}.fail(tc.method, tc.path, tc.body, tc.status, tc.code, tc.msg)
		})
	}
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Stats over HTTP count what the SDK published and consumed, with the
// totals, max and min over the minutes of the range.
func TestStatsOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("p1"))
	ctx := context.Background()
	const name = "test.stats.orders"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "g"}); err != nil {
		t.Fatal(err)
	}
	from := time.Now().Add(-5 * time.Minute)
	const n = 25
	for i := 0; i < n; i++ {
		if _, err := c.Publish(ctx, name, &client.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	k, err := c.Subscribe(ctx, name, "g", func(context.Context, *client.Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dmqtest.Eventually(t, 10*time.Second, "the group to ack everything", func() bool {
		g := api.group(name, "g")
		return g.AckFloor == n && g.InFlight == 0
	})

	type summary struct{ Total, Max, Min uint64 }
	var st struct {
		Topic              string
		From               string
		FromMs             int64 `json:"from_ms"`
		Produced, Consumed summary
		Failures           summary
		StoredNow          uint64 `json:"stored_now"`
		Minutes            []struct {
			Minute             string
			MinuteMs           int64 `json:"minute_ms"`
			Produced, Consumed uint64
			Stored             *uint64
		}
	}
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {time.Now().Add(time.Minute).Format(time.RFC3339)}}
	dmqtest.Eventually(t, 10*time.Second, "the consumed counter to reach every ack", func() bool {
		api.call("GET", "/topics/"+name+"/stats?"+q.Encode(), nil, http.StatusOK, &st)
		return st.Consumed.Total == n
	})
	if st.Topic != name || st.Produced.Total != n || st.Failures.Total != 0 || st.StoredNow != n || len(st.Minutes) < 5 {
		t.Fatalf("stats = %+v, want %d produced and stored, no failures, at least 5 minutes", st, n)
	}
	var maxP, minP, sum uint64 = 0, ^uint64(0), 0
	for _, m := range st.Minutes {
		maxP, minP, sum = max(maxP, m.Produced), min(minP, m.Produced), sum+m.Produced
		if ts, err := time.Parse(time.RFC3339, m.Minute); err != nil || ts.UnixMilli() != m.MinuteMs || m.MinuteMs%60000 != 0 {
			t.Fatalf("minute %q (%v) does not match minute_ms %d on a minute boundary", m.Minute, err, m.MinuteMs)
		}
	}
	if sum != n || st.Produced.Max != maxP || st.Produced.Min != minP || minP != 0 {
		t.Fatalf("produced: sum %d, max/min %d/%d; summary %+v (quiet minutes count as 0)", sum, maxP, minP, st.Produced)
	}
	// Stored: unknown before the topic existed, the count now for this minute.
	if first, last := st.Minutes[0], st.Minutes[len(st.Minutes)-1]; first.Stored != nil || last.Stored == nil || *last.Stored != n {
		t.Fatalf("stored: first minute %v, current minute %v; want null and %d", first.Stored, last.Stored, n)
	}
	// Narrowed to a client that did not publish.
	q.Set("client", "nobody")
	api.call("GET", "/topics/"+name+"/stats?"+q.Encode(), nil, http.StatusOK, &st)
	if st.Produced.Total != 0 {
		t.Fatalf("stats of client nobody: %d produced, want 0", st.Produced.Total)
	}
	// A UTC day (today: the minutes so far).
	api.call("GET", "/topics/"+name+"/stats?day="+time.Now().UTC().Format(time.DateOnly), nil, http.StatusOK, &st)
	if len(st.Minutes) == 0 || st.FromMs%(24*3600*1000) != 0 {
		t.Fatalf("stats of today: %d minutes from %s, want some from midnight UTC", len(st.Minutes), st.From)
	}
	api.fail("GET", "/topics/"+name+"/stats?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", nil, http.StatusBadRequest, "InvalidArgument", "from before to")
}

// Delayed messages published with the SDK are listed, filtered, paged and
// cancelled over HTTP.
func TestDelayedOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const name = "test.delay.orders"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	rs, err := c.Publish(ctx, name,
		(&client.Message{Key: "order-1", Headers: map[string]string{"h": "v"}, Body: []byte("close order 1")}).WithDelay(time.Hour),
		(&client.Message{Key: "order-2", Body: []byte{0xff, 0x00}}).WithDelay(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	type page struct {
		Messages []struct {
			ID      string
			Due     string
			DueMs   int64 `json:"due_ms"`
			Message struct {
				message
				BodyBase64 []byte `json:"body_base64"`
			}
		}
		Total     uint64
		NextDueMs int64  `json:"next_due_ms"`
		NextAfter string `json:"next_after"`
	}
	var p page
	api.call("GET", "/topics/"+name+"/delayed", nil, http.StatusOK, &p)
	if p.Total != 2 || len(p.Messages) != 2 || p.NextAfter != "" || p.NextDueMs != p.Messages[0].DueMs {
		t.Fatalf("delayed = %+v, want 2 on one page with the next due time", p)
	}
	first, second := p.Messages[0], p.Messages[1]
	if first.ID != rs[0].ID || first.Message.Key != "order-1" || first.Message.Headers["h"] != "v" || first.Message.Body == nil || *first.Message.Body != "close order 1" {
		t.Fatalf("first delayed = %+v, want %s with key, header and text body", first, rs[0].ID)
	}
	if second.ID != rs[1].ID || second.Message.Body != nil || !bytes.Equal(second.Message.BodyBase64, []byte{0xff, 0x00}) {
		t.Fatalf("second delayed = %+v, want %s with a base64 body", second, rs[1].ID)
	}
	if due := time.Until(time.UnixMilli(first.DueMs)); due < 59*time.Minute || due > time.Hour+time.Second {
		t.Fatalf("first due in %s, want about 1h", due)
	}
	api.call("GET", "/topics/"+name+"/delayed?key=order-2", nil, http.StatusOK, &p)
	if len(p.Messages) != 1 || p.Messages[0].ID != rs[1].ID {
		t.Fatalf("delayed with key order-2 = %+v", p)
	}
	api.call("GET", "/topics/"+name+"/delayed?limit=1", nil, http.StatusOK, &p)
	if len(p.Messages) != 1 || p.NextAfter != rs[0].ID {
		t.Fatalf("first page of 1 = %+v, want %s and next_after", p, rs[0].ID)
	}
	api.call("GET", "/topics/"+name+"/delayed?limit=1&after="+p.NextAfter, nil, http.StatusOK, &p)
	if len(p.Messages) != 1 || p.Messages[0].ID != rs[1].ID {
		t.Fatalf("second page = %+v, want %s", p, rs[1].ID)
	}
	to := time.Now().Add(90 * time.Minute).UTC().Format(time.RFC3339)
	api.call("GET", "/topics/"+name+"/delayed?to="+to, nil, http.StatusOK, &p)
	if len(p.Messages) != 1 || p.Messages[0].ID != rs[0].ID {
		t.Fatalf("delayed due before %s = %+v, want only %s", to, p, rs[0].ID)
	}

	var cancelled map[string]string
	api.call("DELETE", "/topics/"+name+"/delayed/"+rs[0].ID, nil, http.StatusOK, &cancelled)
	if cancelled["cancelled"] != rs[0].ID {
		t.Fatalf("cancel answer = %v", cancelled)
	}
	api.fail("DELETE", "/topics/"+name+"/delayed/"+rs[0].ID, nil, http.StatusNotFound, "NotFound", "not pending")
	api.call("GET", "/topics/"+name+"/delayed", nil, http.StatusOK, &p)
	if p.Total != 1 || len(p.Messages) != 1 || p.Messages[0].ID != rs[1].ID {
		t.Fatalf("after cancel = %+v, want only %s", p, rs[1].ID)
	}
	var tp topic
	api.call("GET", "/topics/"+name, nil, http.StatusOK, &tp)
	if tp.DelayedPending != 1 {
		t.Fatalf("topic delayed_pending = %d, want 1", tp.DelayedPending)
	}
}

// A message that fails its only attempt becomes a dead letter, is listed
// over HTTP, redriven, delivered again and acked; purge and bad selectors
// answer as documented.
func TestDeadLettersOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const name = "test.dlq.mails"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "mailer", MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	k, err := c.Subscribe(ctx, name, "mailer", func(context.Context, *client.Message) error {
		return fmt.Errorf("smtp refused")
	}, client.ConsumerClientID("m1"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.Publish(ctx, name, &client.Message{Key: "k1", Body: []byte("hello")}, &client.Message{Key: "k2", Body: []byte("bye")})
	if err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "2 dead letters", func() bool { return api.group(name, "mailer").DeadLetters == 2 })
	k.Close()
	// The broker ends the subscription when the stream closes; wait, or
	// the redriven message would go to the closing consumer.
	dmqtest.Eventually(t, 10*time.Second, "the consumer to leave", func() bool { return api.group(name, "mailer").MembersOnline == 0 })

	type deadLetter struct {
		ID          string
		Attempts    uint32
		LastFailure string `json:"last_failure"`
		DeadAt      string `json:"dead_at"`
		DeadAtMs    int64  `json:"dead_at_ms"`
		Redriven    bool
		Message     message
	}
	var page struct {
		DeadLetters []deadLetter `json:"dead_letters"`
		Total       uint64
		NextAfter   string `json:"next_after"`
	}
	base := "/topics/" + name + "/groups/mailer/deadletters"
	api.call("GET", base, nil, http.StatusOK, &page)
	if page.Total != 2 || len(page.DeadLetters) != 2 {
		t.Fatalf("dead letters = %+v, want 2", page)
	}
	d := page.DeadLetters[0]
	if d.ID != rs[0].ID || d.Attempts != 1 || !strings.Contains(d.LastFailure, "smtp refused") || d.DeadAtMs == 0 || d.DeadAt == "" ||
		d.Redriven || d.Message.Key != "k1" || d.Message.Body == nil || *d.Message.Body != "hello" {
		t.Fatalf("dead letter = %+v, want %s after 1 attempt with the failure and the message", d, rs[0].ID)
	}
	api.call("GET", base+"?key=k2", nil, http.StatusOK, &page)
	if len(page.DeadLetters) != 1 || page.DeadLetters[0].ID != rs[1].ID {
		t.Fatalf("dead letters with key k2 = %+v", page)
	}
	api.call("GET", base+"?limit=1", nil, http.StatusOK, &page)
	if len(page.DeadLetters) != 1 || page.NextAfter != rs[0].ID {
		t.Fatalf("page of 1 = %+v, want next_after %s", page, rs[0].ID)
	}
	api.call("GET", base+"?after="+page.NextAfter, nil, http.StatusOK, &page)
	if len(page.DeadLetters) != 1 || page.DeadLetters[0].ID != rs[1].ID {
		t.Fatalf("page after %s = %+v, want %s", rs[0].ID, page, rs[1].ID)
	}

	api.fail("POST", base+"/redrive", `{}`, http.StatusBadRequest, "InvalidArgument", "exactly one")
	api.fail("POST", base+"/redrive", `{"ids":["abc"]}`, http.StatusBadRequest, "InvalidArgument", `"abc" is not a DMQ message id`)
	api.fail("POST", base+"/redrive", `{"ids":["999"]}`, http.StatusNotFound, "NotFound", "999")
	api.fail("GET", "/topics/"+name+"/groups/nope/deadletters", nil, http.StatusNotFound, "NotFound", `group "nope"`)

	var n map[string]int
	api.call("POST", base+"/redrive", map[string]any{"ids": []string{rs[0].ID}}, http.StatusOK, &n)
	if n["redriven"] != 1 {
		t.Fatalf("redrive answer = %v, want 1 redriven", n)
	}
	api.fail("POST", base+"/redrive", map[string]any{"ids": []string{rs[0].ID}}, http.StatusConflict, "FailedPrecondition", "no dead letter to redrive")

	got := make(chan *client.Message, 4)
	k2, err := c.Subscribe(ctx, name, "mailer", func(_ context.Context, m *client.Message) error { got <- m; return nil }, client.ConsumerClientID("m2"))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	select {
	case m := <-got:
		if m.ID != rs[0].ID || m.Key != "k1" || m.Attempt != 1 {
			t.Fatalf("redelivered %s (key %s, attempt %d), want %s with key k1 at attempt 1", m.ID, m.Key, m.Attempt, rs[0].ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("redriven message was not delivered")
	}
	dmqtest.Eventually(t, 10*time.Second, "the redriven dead letter to go once acked", func() bool { return api.group(name, "mailer").DeadLetters == 1 })

	api.call("POST", base+"/purge", map[string]any{"key": "k2"}, http.StatusOK, &n)
	if n["purged"] != 1 {
		t.Fatalf("purge answer = %v, want 1 purged", n)
	}
	api.call("POST", base+"/purge", map[string]any{"all": true}, http.StatusOK, &n)
	if n["purged"] != 0 {
		t.Fatalf("purge of nothing = %v, want 0", n)
	}
	api.call("GET", base, nil, http.StatusOK, &page)
	if page.Total != 0 || len(page.DeadLetters) != 0 {
		t.Fatalf("after purge = %+v, want none", page)
	}
}

// A group that consumed everything is reset to the earliest message, to
// the latest, and to a time.
func TestResetGroupOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const name = "test.reset.orders"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "billing"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Publish(ctx, name, &client.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // publish times are in milliseconds: keep the halves apart
	mid := time.Now()
	for i := 3; i < 5; i++ {
		if _, err := c.Publish(ctx, name, &client.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	reset := func(to string) group {
		t.Helper()
		var g group
		api.call("POST", "/topics/"+name+"/groups/billing/reset", map[string]string{"to": to}, http.StatusOK, &g)
		return g
	}
	if g := reset("latest"); g.Backlog != 0 || g.AckFloor != 5 {
		t.Fatalf("reset to latest = %+v, want no backlog and the floor at 5", g)
	}
	if g := reset("earliest"); g.Backlog != 5 || g.AckFloor != 0 {
		t.Fatalf("reset to earliest = %+v, want all 5 again", g)
	}
	if g := reset(mid.UTC().Format(time.RFC3339Nano)); g.Backlog != 2 || g.AckFloor != 3 {
		t.Fatalf("reset to %s = %+v, want the last 2", mid.Format(time.RFC3339Nano), g)
	}
	api.fail("POST", "/topics/"+name+"/groups/billing/reset", `{}`, http.StatusBadRequest, "InvalidArgument", "earliest")
	api.fail("POST", "/topics/"+name+"/groups/nope/reset", `{"to":"latest"}`, http.StatusNotFound, "NotFound", `group "nope"`)
}

// SDK clients show in the registry over HTTP with their roles; online
// ones cannot be deleted, offline ones can, one by one or all at once.
func TestClientsOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", func(c *config.Config) {
		c.HeartbeatInterval, c.ClientTimeout = 50*time.Millisecond, 300*time.Millisecond
	})
	api := newAPI(t, s)
	const name = "test.clients.orders"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	ctx := context.Background()
	producer, err := client.Dial(s.GRPCAddr(), client.WithClientID("order-service"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, err := producer.Publish(ctx, name, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	type clientInfo struct {
		ID         string
		Online     bool
		Roles      []string
		Address    string
		SDKVersion string `json:"sdk_version"`
		Produces   []string
		LastSeen   string `json:"last_seen"`
		LastSeenMs int64  `json:"last_seen_ms"`
	}
	list := func(query string) []clientInfo {
		t.Helper()
		var resp struct{ Clients []clientInfo }
		api.call("GET", "/clients"+query, nil, http.StatusOK, &resp)
		return resp.Clients
	}
	dmqtest.Eventually(t, 5*time.Second, "the producer in the registry", func() bool { return len(list("?topic="+name)) == 1 })
	cs := list("?online=true")
	if len(cs) != 1 || cs[0].ID != "order-service" || !cs[0].Online || fmt.Sprint(cs[0].Roles) != "[producer]" ||
		fmt.Sprint(cs[0].Produces) != "["+name+"]" || cs[0].Address == "" || cs[0].SDKVersion == "" || cs[0].LastSeenMs == 0 || cs[0].LastSeen == "" {
		t.Fatalf("online clients = %+v, want order-service producing %s", cs, name)
	}
	if cs := list("?online=false"); len(cs) != 0 {
		t.Fatalf("offline clients = %+v, want none", cs)
	}
	if cs := list("?topic=test.clients.other"); len(cs) != 0 {
		t.Fatalf("clients of another topic = %+v, want none", cs)
	}
	api.fail("DELETE", "/clients/order-service", nil, http.StatusConflict, "FailedPrecondition", "is online")

	// A client that leaves within its first heartbeat interval is forgotten at
	// once (a dmq pub); these live longer.
	time.Sleep(100 * time.Millisecond)
	producer.Close() // says goodbye: offline at once
	dmqtest.Eventually(t, 5*time.Second, "the producer offline", func() bool { return len(list("?online=false")) == 1 })
	var n map[string]int
	api.call("DELETE", "/clients/order-service", nil, http.StatusOK, &n)
	if n["deleted"] != 1 {
		t.Fatalf("delete answer = %v, want 1 deleted", n)
	}
	api.fail("DELETE", "/clients/order-service", nil, http.StatusNotFound, "NotFound", "not in the registry")

	// Offline clients are swept all at once by delete-offline.
	other := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("sms-service"))
	if _, err := other.Publish(ctx, name, &client.Message{Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 5*time.Second, "sms-service online", func() bool { return len(list("?online=true")) == 1 })
	api.call("POST", "/clients/delete-offline", nil, http.StatusOK, &n)
	if n["deleted"] != 0 {
		t.Fatalf("delete-offline with everyone online = %v, want 0", n)
	}
	time.Sleep(100 * time.Millisecond)
	other.Close()
	dmqtest.Eventually(t, 5*time.Second, "sms-service offline", func() bool { return len(list("?online=false")) == 1 })
	api.call("POST", "/clients/delete-offline", nil, http.StatusOK, &n)
	if n["deleted"] != 1 || len(list("")) != 0 {
		t.Fatalf("delete-offline = %v, registry %v; want 1 deleted and none left", n, list(""))
	}
}

// A message published with a business key, nacked once and acked, has
// exactly those events over HTTP, found by id and by key.
func TestTraceOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	c := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("shop-1"))
	ctx := context.Background()
	const name = "test.trace.orders"
	api.call("POST", "/topics", map[string]string{"name": name}, http.StatusCreated, nil)
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: "billing", RetryBackoff: []time.Duration{time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	from := time.Now().Add(-time.Minute)
	rs, err := c.Publish(ctx, name, &client.Message{Key: "order-77", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	res := rs[0]
	tries := 0
	k, err := c.Subscribe(ctx, name, "billing", func(context.Context, *client.Message) error {
		if tries++; tries == 1 {
			return fmt.Errorf("stock service down")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	type event struct {
		Kind, Time, Group, Client, Reason string
		TimeMs                            int64 `json:"time_ms"`
		Attempt                           uint32
	}
	kinds := func(es []event) string {
		var ks []string
		for _, e := range es {
			ks = append(ks, e.Kind)
		}
		return strings.Join(ks, ", ")
	}
	const want = "published, delivered, nacked, delivered, acked"
	var byID struct {
		Topic     string
		MessageID string `json:"message_id"`
		Events    []event
	}
	dmqtest.Eventually(t, 10*time.Second, "the trace to end with the ack", func() bool {
		api.call("GET", "/topics/"+name+"/trace/"+res.ID, nil, http.StatusOK, &byID)
		return kinds(byID.Events) == want
	})
	if e := byID.Events[2]; e.Reason != "stock service down" || e.Group != "billing" || e.Client != "shop-1" || byID.MessageID != res.ID {
		t.Fatalf("nack event %+v of message %q, want the reason, group billing and client shop-1", e, byID.MessageID)
	}
	if e := byID.Events[3]; e.Attempt != 2 {
		t.Fatalf("redelivery %+v, want attempt 2", e)
	}
	var byKey struct {
		Key      string
		Messages []struct {
			MessageID string `json:"message_id"`
			Events    []event
		}
	}
	q := url.Values{"key": {"order-77"}, "from": {from.Format(time.RFC3339)}, "to": {time.Now().Add(time.Minute).Format(time.RFC3339)}}
	api.call("GET", "/topics/"+name+"/trace?"+q.Encode(), nil, http.StatusOK, &byKey)
	if len(byKey.Messages) != 1 || byKey.Messages[0].MessageID != res.ID || kinds(byKey.Messages[0].Events) != want {
		t.Fatalf("search by key = %+v, want message %s with %s", byKey, res.ID, want)
	}
	api.fail("GET", "/topics/"+name+"/trace?key=order-77", nil, http.StatusBadRequest, "InvalidArgument", "time range")
	api.fail("GET", "/topics/"+name+"/trace?"+url.Values{"from": q["from"], "to": q["to"]}.Encode(), nil, http.StatusBadRequest, "InvalidArgument", "key")
	api.fail("GET", "/topics/"+name+"/trace/999", nil, http.StatusNotFound, "NotFound", "no trace")
	api.fail("GET", "/topics/"+name+"/trace/abc", nil, http.StatusBadRequest, "InvalidArgument", "abc")
	api.fail("GET", "/topics/test.trace.none/trace/0", nil, http.StatusNotFound, "NotFound", "does not exist")
}

// The topic list pages by name and says how many topics match in all.
func TestTopicPagesOverHTTP(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	for i := 0; i < 25; i++ {
		api.call("POST", "/topics", map[string]string{"name": fmt.Sprintf("test.page.t%02d", i), "department": []string{"shop", "pay"}[i%2]}, http.StatusCreated, nil)
	}
	type page struct {
		Topics    []topic
		Total     int
		NextAfter string `json:"next_after"`
	}
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("more than 3 pages of 10 for 25 topics")
		}
		var p page
		api.call("GET", "/topics?limit=10&after="+after, nil, http.StatusOK, &p)
		if p.Total != 25 {
			t.Fatalf("total = %d, want 25", p.Total)
		}
		for _, tp := range p.Topics {
			names = append(names, tp.Name)
		}
		if p.NextAfter == "" {
			break
		}
		after = p.NextAfter
	}
	if len(names) != 25 || names[0] != "test.page.t00" || names[24] != "test.page.t24" {
		t.Fatalf("paged names = %v, want t00..t24 once each", names)
	}
	var p page
	api.call("GET", "/topics?dept=pay&limit=5", nil, http.StatusOK, &p)
	if p.Total != 12 || len(p.Topics) != 5 || p.NextAfter != "test.page.t09" {
		t.Fatalf("dept=pay: total %d, %d topics, next_after %q; want 12, 5, test.page.t09", p.Total, len(p.Topics), p.NextAfter)
	}
	api.fail("GET", "/topics?limit=0", nil, http.StatusBadRequest, "InvalidArgument", "limit")
}

// A page of another web site cannot change anything through a browser
// (cross-site request forgery); the console's own requests and programs
// without browser headers can.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	base := "http://" + s.HTTPAddr()
	send := func(body, contentType string, headers map[string]string) int {
		t.Helper()
		req, err := http.NewRequest("POST", base+"/api/v1/topics", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, contentType string
		headers           map[string]string
		want              int
	}{
		{"form post from another site", "text/plain", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"JSON from another origin", "application/json", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"from a sibling site", "application/json", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"text/plain from the console's origin", "text/plain", map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"}, http.StatusUnsupportedMediaType},
	} {
		if got := send(`{"name": "test.csrf.x"}`, c.contentType, c.headers); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	var resp struct{ Total int }
	newAPI(t, s).call("GET", "/topics", nil, http.StatusOK, &resp)
	if resp.Total != 0 {
		t.Fatalf("%d topics created by refused requests", resp.Total)
	}
	if got := send(`{"name": "test.csrf.console"}`, "application/json", map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"}); got != http.StatusCreated {
		t.Fatalf("the console's own request: %d, want 201", got)
	}
	if got := send(`{"name": "test.csrf.curl"}`, "", nil); got != http.StatusCreated {
		t.Fatalf("a program's request without browser headers: %d, want 201", got)
	}
}

// A topic that waits for an approval must name its owner; auto-approved
// environments need not.
func TestPendingTopicsNeedAnOwner(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	api := newAPI(t, s)
	api.fail("POST", "/topics", map[string]string{"name": "prod.shop.orders", "department": "shop"}, http.StatusBadRequest, "InvalidArgument", "needs an owner")
	api.fail("GET", "/topics/prod.shop.orders", nil, http.StatusNotFound, "NotFound", "does not exist")
	api.call("POST", "/topics", map[string]string{"name": "prod.shop.orders", "owner": "alice"}, http.StatusCreated, nil)
	api.call("POST", "/topics", map[string]string{"name": "test.shop.orders"}, http.StatusCreated, nil)
}
