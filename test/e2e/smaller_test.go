package e2e

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec sends and receives bytes as they are, to put malformed protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// A request that is not valid protobuf is the client's fault: InvalidArgument, on
// unary calls and on streams, not gRPC's Internal; the server goes on serving.
func TestMalformedProtobufIsInvalidArgument(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	garbage := []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01} // a length beyond the data
	var out []byte
	for _, method := range []string{"/dmq.v1.Broker/GetTopic", "/dmq.v1.Broker/Publish", "/dmq.v1.Broker/CreateTopic"} {
		err := conn.Invoke(ctx, method, &garbage, &out)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "malformed request") {
			t.Errorf("%s with malformed bytes: %v, want InvalidArgument (malformed request)", method, err)
		}
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/dmq.v1.Broker/PublishStream")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&garbage); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(&out); status.Code(err) != codes.InvalidArgument {
		t.Errorf("PublishStream with malformed bytes: %v, want InvalidArgument", err)
	}
	// Well-formed calls still work.
	c := dmqtest.Dial(t, s.GRPCAddr())
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.malformed.after"}); err != nil {
		t.Fatalf("a good call after malformed ones: %v", err)
	}
}

// An empty topic or group name is bad input, not a missing object.
func TestEmptyNamesAreInvalidArgument(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	setupTopic(t, c, "test.empty.names", client.GroupSpec{Name: "g"})
	for name, call := range map[string]func() error{
		"get topic":   func() error { _, err := c.GetTopic(ctx, ""); return err },
		"publish":     func() error { _, err := c.Publish(ctx, "", &client.Message{Body: []byte("x")}); return err },
		"delete":      func() error { return c.DeleteTopic(ctx, "") },
		"approve":     func() error { _, err := c.ApproveTopic(ctx, "", "bob", ""); return err },
		"get group":   func() error { _, err := c.GetGroup(ctx, "test.empty.names", ""); return err },
		"list groups": func() error { _, err := c.API().ListGroups(ctx, &dmqv1.ListGroupsRequest{}); return err },
	} {
		if err := call(); client.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name is empty") {
			t.Errorf("%s with an empty name: %v, want InvalidArgument ... name is empty", name, err)
		}
	}
}

// A status filter that names no status is refused (400, InvalidArgument), over both
// APIs, instead of matching nothing.
func TestUnknownStatusFilterIsRefused(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	setupTopic(t, c, "test.status.filter")
	base := "http://" + s.HTTPAddr() + "/api/v1/topics"
	if code, body := httpJSON(t, "GET", base+"?status=bogus", ""); code != http.StatusBadRequest || !strings.Contains(body, `\"bogus\" is not pending, approved, rejected or disabled`) {
		t.Errorf("?status=bogus: %d %s, want 400 naming the statuses", code, body)
	}
	if code, body := httpJSON(t, "GET", base+"?status=approved", ""); code != http.StatusOK || !strings.Contains(body, "test.status.filter") {
		t.Errorf("?status=approved: %d %s", code, body)
	}
	if _, err := c.ListTopics(ctx, client.TopicFilter{Status: "bogus"}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("ListTopics with status bogus: %v, want InvalidArgument", err)
	}
}

// The Authorization scheme is case-insensitive (RFC 9110): "bearer" and "BEARER" work
// like "Bearer", over HTTP and gRPC.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	s, token := authServer(t)
	for _, scheme := range []string{"bearer", "BEARER", "Bearer", "bEaReR"} {
		req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr()+"/api/v1/topics", nil)
		req.Header.Set("Authorization", scheme+" "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HTTP with %q: %d, want 200", scheme, resp.StatusCode)
		}
		c := dmqtest.Dial(t, s.GRPCAddr())
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", scheme+" "+token)
		if _, err := c.API().ListTopics(ctx, &dmqv1.ListTopicsRequest{}); err != nil {
			t.Errorf("gRPC with %q: %v", scheme, err)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr()+"/api/v1/topics", nil)
	req.Header.Set("Authorization", "Basic "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP with Basic: %d, want 401", resp.StatusCode)
	}
}

// Offline clients leave the registry after client_retention; a client that leaves
// within its first heartbeat interval (a dmq pub) is not kept at all.
func TestOfflineClientsExpire(t *testing.T) {
	s := dmqtest.Start(t, "", func(c *config.Config) {
		c.HeartbeatInterval, c.ClientTimeout = 200*time.Millisecond, 400*time.Millisecond
		c.ClientRetention, c.RetentionInterval = time.Second, 100*time.Millisecond
	})
	admin := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.clients.expire"
	setupTopic(t, admin, topic)
	ids := func() map[string]bool {
		cs, err := admin.ListClients(ctx, client.ClientFilter{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range cs {
			out[c.ClientId] = c.Online
		}
		return out
	}

	// Short-lived: publishes once and leaves at once.
	for range 5 {
		out, errOut, code := runDMQ(t, s.GRPCAddr(), "x\n", "pub", topic)
		if code != 0 {
			t.Fatalf("dmq pub: %d %s %s", code, out, errOut)
		}
	}
	short := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("one-shot"))
	if _, err := short.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	short.Close()
	if m := ids(); len(m) != 0 {
		t.Fatalf("short-lived clients left entries: %v", m)
	}

	// Long-lived: online, offline once it left, then forgotten.
	long := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("service"))
	if _, err := long.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 5*time.Second, "the service online", func() bool { return ids()["service"] })
	time.Sleep(300 * time.Millisecond) // beyond its first heartbeat interval
	long.Close()
	if m := ids(); len(m) != 1 || m["service"] {
		t.Fatalf("after the service left: %v, want it offline", m)
	}
	dmqtest.Eventually(t, 5*time.Second, "the offline service forgotten", func() bool { return len(ids()) == 0 })
}

// runDMQ runs the dmq binary against addr with stdin and returns its output and exit code.
func runDMQ(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(dmqtest.Binary(t), append([]string{"--server", addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run dmq: %v", err)
	}
	return out.String(), errOut.String(), code
}
