package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// Bad input gets a clear error with the right code, and changes nothing.
func TestBadInputGetsClearErrorAndChangesNothing(t *testing.T) {
	s := dmqtest.Start(t, "", func(c *config.Config) { c.MaxBodyBytes = 1024 })
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	setupTopic(t, c, "test.bad.input", client.GroupSpec{Name: "g"})
	setupTopic(t, c, "test.bad.held", client.GroupSpec{Name: "g"})

	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown topic", func() error { _, err := c.GetTopic(ctx, "test.a.b"); return err }, codes.NotFound, `topic "test.a.b" does not exist`},
		{"publish to unknown topic", func() error {
			_, err := c.Publish(ctx, "test.no.such", &client.Message{Body: []byte("x")})
			return err
		}, codes.NotFound, `topic "test.no.such" does not exist`},
		{"invalid topic name", func() error { _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "Bad Name"}); return err }, codes.InvalidArgument, "env.dept.name"},
		{"two-part topic name", func() error { _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.x"}); return err }, codes.InvalidArgument, "env.dept.name"},
		{"duplicate topic", func() error { _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.bad.input"}); return err }, codes.AlreadyExists, "already exists"},
		{"unknown group", func() error { _, err := c.GetGroup(ctx, "test.bad.input", "nope"); return err }, codes.NotFound, `group "nope" of topic "test.bad.input" does not exist`},
		{"invalid group name", func() error {
			_, err := c.CreateGroup(ctx, client.GroupSpec{Topic: "test.bad.input", Name: "a b"})
			return err
		}, codes.InvalidArgument, "group name"},
		{"empty body", func() error { _, err := c.Publish(ctx, "test.bad.input", &client.Message{}); return err }, codes.InvalidArgument, "body is empty"},
		{"oversize body", func() error {
			_, err := c.Publish(ctx, "test.bad.input", &client.Message{Body: bytes.Repeat([]byte("x"), 1025)})
			return err
		}, codes.InvalidArgument, "exceeds the limit of 1024 bytes"},
		{"one bad message in a batch", func() error {
			_, err := c.Publish(ctx, "test.bad.input", &client.Message{Body: []byte("ok")}, &client.Message{})
			return err
		}, codes.InvalidArgument, "message 1: body is empty"},
		{"ack of a garbage id", func() error {
			_, err := c.API().Ack(ctx, &dmqv1.AckRequest{Topic: "test.bad.input", Group: "g", Ids: []string{"abc"}})
			return err
		}, codes.InvalidArgument, `message id "abc"`},
		{"ack of an id beyond the log", func() error {
			_, err := c.API().Ack(ctx, &dmqv1.AckRequest{Topic: "test.bad.input", Group: "g", Ids: []string{"99"}})
			return err
		}, codes.InvalidArgument, "message id 99 does not exist"},
		{"ack of a stored id not yet delivered", func() error {
			if _, err := c.Publish(ctx, "test.bad.held", &client.Message{Body: []byte("x")}); err != nil {
				return err
			}
			_, err := c.API().Ack(ctx, &dmqv1.AckRequest{Topic: "test.bad.held", Group: "g", Ids: []string{"0"}})
			return err
		}, codes.InvalidArgument, "message id 0 was not delivered"},
		{"nack of an id not in flight", func() error {
			_, err := c.API().Nack(ctx, &dmqv1.NackRequest{Topic: "test.bad.held", Group: "g", Ids: []string{"0"}})
			return err
		}, codes.InvalidArgument, "message id 0 is not in flight"},
		{"subscribe to unknown group", func() error {
			_, err := c.Subscribe(ctx, "test.bad.input", "nope", func(context.Context, *client.Message) error { return nil })
			return err
		}, codes.NotFound, `group "nope"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if client.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want code %s with %q", err, tc.code, tc.msg)
			}
		})
	}
	// Nothing was stored by the failed calls.
	tp, err := c.GetTopic(ctx, "test.bad.input")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Stats.NextOffset != 0 {
		t.Errorf("failed publishes stored %d messages", tp.Stats.NextOffset)
	}
	if ts, _ := c.ListTopics(ctx, client.TopicFilter{}); len(ts) != 2 {
		t.Errorf("failed creates left %d topics, want 2", len(ts))
	}
	if g, _ := c.GetGroup(ctx, "test.bad.held", "g"); g.Stats.Backlog != 1 || g.Stats.AckFloor != 0 {
		t.Errorf("refused ack or nack changed the group: %+v", g.Stats)
	}
}

// Credits beyond the limit and requests before a start are refused on the stream.
func TestSubscribeStreamRejectsBadRequests(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	setupTopic(t, c, "test.bad.stream", client.GroupSpec{Name: "g"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := c.API().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: 5}})
	if _, err := st.Recv(); client.Code(err) != codes.InvalidArgument {
		t.Errorf("credit before start: got %v, want InvalidArgument", err)
	}

	st, err = c.API().Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: "test.bad.stream", Group: "g", ClientId: "x"}}})
	if r, err := st.Recv(); err != nil || r.GetSubscribed() == nil {
		t.Fatalf("start: %v, %v", r, err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: 1 << 30}})
	r, err := st.Recv()
	if err != nil || r.GetError() == nil || codes.Code(r.GetError().Code) != codes.InvalidArgument || !strings.Contains(r.GetError().Message, "credit") {
		t.Fatalf("huge credit: got %v, %v; want an InvalidArgument error on the stream", r, err)
	}
	st.Send(&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Ack{Ack: &dmqv1.AckIds{Ids: []string{"12345"}}}})
	r, err = st.Recv()
	if err != nil || r.GetError() == nil || !strings.Contains(r.GetError().Message, "12345") {
		t.Fatalf("ack of unknown id: got %v, %v; want an error naming the id", r, err)
	}
}

// A second server on the same data directory, and a port in use, fail with clear errors.
func TestSecondServerOnSameDataDirAndBusyPortFail(t *testing.T) {
	dir := t.TempDir()
	first := dmqtest.Start(t, dir, nil)

	cfg := dmqtest.Config(dir)
	s, _ := server.New(cfg, nil)
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "in use by another dmq server") {
		t.Errorf("second server on %s: err = %v, want 'in use by another dmq server'", dir, err)
	}

	cfg.DataDir, cfg.Listen = t.TempDir(), first.GRPCAddr()
	s, _ = server.New(cfg, nil)
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "listen for gRPC on "+first.GRPCAddr()) {
		t.Errorf("server on busy port: err = %v, want a listen error naming the address", err)
	}
	// The first server still works.
	c := dmqtest.Dial(t, first.GRPCAddr())
	if _, err := c.ListTopics(context.Background(), client.TopicFilter{}); err != nil {
		t.Errorf("first server after failed starts: %v", err)
	}
}

// Stock tools work: the standard health service and reflection.
func TestHealthAndReflectionServices(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "dmq.v1.Broker"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check = %v, %v; want SERVING", h, err)
	}
	rs, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}})
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "dmq.v1.Broker") {
		t.Errorf("reflection lists %v, want dmq.v1.Broker among them", names)
	}
	// HTTP health.
	hr, err := http.Get("http://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("GET /healthz = %d %s", hr.StatusCode, body)
	}
}
