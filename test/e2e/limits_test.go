package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// Every free-text field the broker stores has a documented size (docs/api.md,
// "Limits"): a longer value is refused with InvalidArgument (400 over HTTP) naming
// the field and the limit, and changes nothing. A nack reason, filled from a
// consumer's error, is cut instead.
func TestFreeTextFieldsAreBounded(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.limits.orders"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "prod.limits.held", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	grant := func(p string) *dmqv1.TokenGrant { return &dmqv1.TokenGrant{Pattern: p, Publish: true} }
	var manyGrants []*dmqv1.TokenGrant
	for range 101 {
		manyGrants = append(manyGrants, grant("test.*"))
	}

	cases := []struct {
		name string
		call func() error
		msg  string
	}{
		{"100,000-character owner", func() error {
			_, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.limits.a", Owner: long(100_000)})
			return err
		}, "owner is 100000 characters long; the limit is 128"},
		{"900 KB purpose", func() error {
			_, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.limits.a", Purpose: long(900 << 10)})
			return err
		}, "purpose is 921600 characters long; the limit is 1024"},
		{"65-character department", func() error {
			_, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.limits.a", Department: long(65)})
			return err
		}, "department is 65 characters long; the limit is 64"},
		{"long requested_by", func() error {
			_, err := c.API().CreateTopic(ctx, &dmqv1.CreateTopicRequest{Name: "test.limits.a", RequestedBy: long(129)})
			return err
		}, "requested_by is 129 characters long; the limit is 128"},
		{"long topic name", func() error {
			_, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.limits." + long(10_000)})
			return err
		}, "is 10012 characters long; the limit is 200"},
		{"long decision reason", func() error { _, err := c.ApproveTopic(ctx, "prod.limits.held", "bob", long(1025)); return err }, "reason is 1025 characters long; the limit is 1024"},
		{"long decider", func() error { _, err := c.RejectTopic(ctx, "prod.limits.held", long(200), "no"); return err }, "the decider's name is 200 characters long; the limit is 128"},
		{"long application name", func() error {
			_, err := c.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: long(65), Admin: true})
			return err
		}, "application name"},
		{"101 grants", func() error {
			_, err := c.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "many", Grants: manyGrants})
			return err
		}, "101 grants; the limit is 100"},
		{"long grant pattern", func() error {
			_, err := c.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "wide", Grants: []*dmqv1.TokenGrant{grant("test." + long(300) + ".*")}})
			return err
		}, "is longer than 200 characters"},
		{"long grant group", func() error {
			_, err := c.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "grp", Grants: []*dmqv1.TokenGrant{{Pattern: "test.*", Subscribe: true, Groups: []string{long(129)}}}})
			return err
		}, "must have 1 to 128 characters"},
		{"long user name", func() error {
			_, err := c.API().CreateUser(ctx, &dmqv1.CreateUserRequest{Name: long(100_000), Role: "viewer", Password: "long enough"})
			return err
		}, "user name"},
		{"long user department", func() error {
			_, err := c.API().CreateUser(ctx, &dmqv1.CreateUserRequest{Name: "olga", Role: "owner", Department: long(65), Password: "long enough"})
			return err
		}, "1 to 64 characters"},
		{"long client host", func() error {
			_, err := c.API().Heartbeat(ctx, &dmqv1.HeartbeatRequest{ClientId: "probe", Host: long(256)})
			return err
		}, "host is 256 characters long; the limit is 255"},
		{"long client id on publish", func() error {
			_, err := c.API().Publish(ctx, &dmqv1.PublishRequest{Topic: topic, ClientId: long(257), Messages: []*dmqv1.OutgoingMessage{{Body: []byte("x")}}})
			return err
		}, "client id is 257 bytes long; the limit is 256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if client.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want InvalidArgument with %q", err, tc.msg)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("the error repeats the value: %d bytes", len(err.Error()))
			}
		})
	}

	// The same over HTTP: 400 InvalidArgument.
	base := "http://" + s.HTTPAddr() + "/api/v1"
	for _, body := range []string{
		fmt.Sprintf(`{"name":"test.limits.h","owner":%q}`, long(100_000)),
		fmt.Sprintf(`{"name":"test.limits.h","purpose":%q}`, long(900<<10)),
	} {
		code, resp := httpJSON(t, "POST", base+"/topics", body)
		if code != http.StatusBadRequest || !strings.Contains(resp, `"InvalidArgument"`) || !strings.Contains(resp, "the limit is") {
			t.Errorf("POST /topics with a long field: %d %.300s, want 400 InvalidArgument", code, resp)
		}
	}
	if code, resp := httpJSON(t, "POST", base+"/topics/prod.limits.held/reject", fmt.Sprintf(`{"by":"bob","reason":%q}`, long(5000))); code != http.StatusBadRequest || !strings.Contains(resp, "reason is 5000 characters long") {
		t.Errorf("reject with a long reason: %d %.300s", code, resp)
	}

	// Nothing changed.
	ts, err := c.ListTopics(ctx, client.TopicFilter{})
	if err != nil || len(ts) != 2 {
		t.Fatalf("refused creates left %d topics (%v), want 2", len(ts), err)
	}
	if tp, _ := c.GetTopic(ctx, "prod.limits.held"); tp.Status != "pending" || tp.Stats.NextOffset != 0 {
		t.Fatalf("refused decisions or publishes changed the topic: %+v", tp)
	}
	if tk, _ := c.API().ListTokens(ctx, &dmqv1.ListTokensRequest{}); len(tk.GetApps()) != 0 {
		t.Fatalf("refused tokens were created: %v", tk.GetApps())
	}
	if us, _ := c.API().ListUsers(ctx, &dmqv1.ListUsersRequest{}); len(us.GetUsers()) != 0 {
		t.Fatalf("refused users were created: %v", us.GetUsers())
	}
	cl, _ := c.API().ListClients(ctx, &dmqv1.ListClientsRequest{})
	for _, e := range cl.GetClients() {
		if e.ClientId == "probe" {
			t.Fatalf("a refused heartbeat registered its client: %v", e)
		}
	}

	// At the limits, in characters, not bytes: accepted.
	cjk := strings.Repeat("订", 1024) // 3 bytes each
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.limits.cjk", Owner: long(128), Department: long(64), Purpose: cjk}); err != nil {
		t.Fatalf("fields at their limits: %v", err)
	}

	// A nack reason is cut to 1024 characters, not refused.
	if _, err := c.Publish(ctx, topic, &client.Message{Body: []byte("fail once")}); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Bool
	done := make(chan string, 1)
	k, err := c.Subscribe(ctx, topic, "g", func(_ context.Context, m *client.Message) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New(long(50_000))
		}
		select {
		case done <- m.ID:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var id string
	select {
	case id = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the nacked message was not delivered again")
	}
	tr, err := c.Trace(ctx, topic, id)
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	for _, e := range tr.Events {
		if e.Kind == "nacked" {
			reason = e.Reason
		}
	}
	if n := utf8.RuneCountInString(reason); n != 1024 || !strings.HasSuffix(reason, "(cut)") {
		t.Fatalf("nack reason kept with %d characters (%.40q…), want 1024 ending in (cut)", n, reason)
	}
}

// httpJSON sends a JSON request and returns the status and body.
func httpJSON(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A login with a user name no user can have is refused before it reaches the
// failed-login limiter or the audit log, which would keep it.
func TestLoginWithAHugeUserNameIsRefused(t *testing.T) {
	s, adminToken := authServer(t)
	code, resp := httpJSON(t, "POST", "http://"+s.HTTPAddr()+"/api/v1/login", fmt.Sprintf(`{"user":%q,"password":"x"}`, strings.Repeat("u", 500_000)))
	if code != http.StatusBadRequest || !strings.Contains(resp, "at most 64 characters") {
		t.Fatalf("login with a 500,000-character user name: %d %.300s, want 400", code, resp)
	}
	admin := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(adminToken))
	au, err := admin.API().ListAudit(context.Background(), &dmqv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range au.Entries {
		if len(e.Target) > 1000 {
			t.Fatalf("the audit log kept a %d-byte target (%s)", len(e.Target), e.Action)
		}
	}
}
