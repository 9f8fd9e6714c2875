package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/dmqtest"
)

// run executes the dmq command line in-process against addr.
func run(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(append([]string{"--server", addr}, args...), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func mustRun(t *testing.T, addr, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, addr, stdin, args...)
	if code != 0 {
		t.Fatalf("dmq %s: exit %d, stderr %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestPubSubTourThroughTheCommandLine(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	mustRun(t, addr, "", "topic", "create", "test.cli.orders", "--dept", "shop", "--owner", "alice", "--purpose", "orders")
	mustRun(t, addr, "", "group", "create", "test.cli.orders", "billing")
	mustRun(t, addr, "", "group", "create", "test.cli.orders", "audit", "--mode", "broadcast", "--ack", "auto")

	id := mustRun(t, addr, "", "pub", "test.cli.orders", "--key", "order-1", "--header", "src=web", "hello", "world")
	if strings.TrimSpace(id) != "0" {
		t.Fatalf("pub printed %q, want id 0", id)
	}
	ids := strings.Fields(mustRun(t, addr, "a\nb\nc\n", "pub", "test.cli.orders"))
	if strings.Join(ids, ",") != "1,2,3" {
		t.Fatalf("pub from stdin printed %v, want ids 1,2,3 in input order", ids)
	}

	out := mustRun(t, addr, "", "sub", "test.cli.orders", "--group", "billing", "--count", "1", "--json")
	var m jsonMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("sub --json printed %q: %v", out, err)
	}
	if m.ID != "0" || m.Key != "order-1" || m.Body != "hello world" || m.Headers["src"] != "web" || m.Attempt != 1 {
		t.Fatalf("sub --json = %+v", m)
	}
	// The rest, then nothing: every printed message was acked.
	if out := mustRun(t, addr, "", "sub", "test.cli.orders", "--group", "billing", "--idle", "300ms"); out != "a\nb\nc\n" {
		t.Fatalf("sub --idle printed %q, want a b c", out)
	}
	if out := mustRun(t, addr, "", "sub", "test.cli.orders", "--group", "billing", "--idle", "300ms"); out != "" {
		t.Fatalf("second sub printed %q, want nothing (all acked)", out)
	}
	for _, member := range []string{"m1", "m2"} {
		out := mustRun(t, addr, "", "sub", "test.cli.orders", "--group", "audit", "--client-id", member, "--count", "4")
		if out != "hello world\na\nb\nc\n" {
			t.Fatalf("broadcast member %s printed %q", member, out)
		}
	}
	list := mustRun(t, addr, "", "group", "list", "test.cli.orders")
	if !strings.Contains(list, "billing") || !strings.Contains(list, "broadcast") {
		t.Fatalf("group list = %q", list)
	}
	topics := mustRun(t, addr, "", "topic", "list")
	if !strings.Contains(topics, "test.cli.orders") || !strings.Contains(topics, "alice") {
		t.Fatalf("topic list = %q", topics)
	}
}

// `sub --no-ack` holds a message; another consumer gets it after the ack timeout.
func TestSubNoAckLetsAnotherConsumerSeeTheRedelivery(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	mustRun(t, addr, "", "topic", "create", "test.cli.redeliver")
	mustRun(t, addr, "", "group", "create", "test.cli.redeliver", "slow", "--ack-timeout", "500ms")
	mustRun(t, addr, "", "pub", "test.cli.redeliver", "again")
	held := make(chan string, 1)
	go func() {
		out, _, _ := run(t, addr, "", "sub", "test.cli.redeliver", "--group", "slow", "--no-ack", "--idle", "3s", "--json")
		held <- out
	}()
	c := dmqtest.Dial(t, addr)
	dmqtest.Eventually(t, 10*time.Second, "the --no-ack consumer to hold the message", func() bool {
		g, err := c.GetGroup(context.Background(), "test.cli.redeliver", "slow")
		return err == nil && g.Stats.InFlight == 1
	})
	out := mustRun(t, addr, "", "sub", "test.cli.redeliver", "--group", "slow", "--count", "1", "--idle", "10s", "--json")
	var m jsonMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Body != "again" || m.Attempt != 2 {
		t.Fatalf("second consumer got %q (%v), want the message again with attempt 2", out, err)
	}
	if first := <-held; !strings.Contains(first, `"attempt":1`) {
		t.Fatalf("--no-ack consumer printed %q, want attempt 1", first)
	}
}

// A message nacked past max attempts shows up in `dmq dlq`, is redriven,
// consumed again, and replayed with `dmq group reset`.
func TestDeadLetterAndResetCommands(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	mustRun(t, addr, "", "topic", "create", "test.cli.dlq")
	mustRun(t, addr, "", "group", "create", "test.cli.dlq", "g", "--max-attempts", "1", "--retry", "10ms")
	mustRun(t, addr, "", "pub", "test.cli.dlq", "--key", "order-9", "bad")
	// --no-ack holds the message and gives it back on exit: its one attempt failed.
	mustRun(t, addr, "", "sub", "test.cli.dlq", "--group", "g", "--no-ack", "--idle", "300ms")
	c := dmqtest.Dial(t, addr)
	dmqtest.Eventually(t, 10*time.Second, "a dead letter", func() bool {
		g, err := c.GetGroup(context.Background(), "test.cli.dlq", "g")
		return err == nil && g.Stats.DeadLetters == 1
	})
	list := mustRun(t, addr, "", "dlq", "list", "test.cli.dlq", "g")
	if !strings.Contains(list, "order-9") || !strings.Contains(list, "1 dead letters in group g") {
		t.Fatalf("dlq list = %q", list)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, addr, "", "dlq", "show", "test.cli.dlq", "g", "0")), &shown); err != nil || shown["body"] != "bad" || shown["attempts"] != 1.0 {
		t.Fatalf("dlq show = %v, %v", shown, err)
	}
	if _, errOut, code := run(t, addr, "", "dlq", "purge", "test.cli.dlq", "g"); code == 0 || !strings.Contains(errOut, "exactly one of --id, --key or --all") {
		t.Fatalf("purge without a selection: exit %d, %q", code, errOut)
	}
	if out := mustRun(t, addr, "", "dlq", "redrive", "test.cli.dlq", "g", "--key", "order-9"); !strings.Contains(out, "redriven 1") {
		t.Fatalf("redrive printed %q", out)
	}
	if out := mustRun(t, addr, "", "sub", "test.cli.dlq", "--group", "g", "--count", "1"); out != "bad\n" {
		t.Fatalf("after redrive sub printed %q, want bad", out)
	}
	mustRun(t, addr, "", "pub", "test.cli.dlq", "good")
	if out := mustRun(t, addr, "", "group", "reset", "test.cli.dlq", "g", "--to", "earliest"); !strings.Contains(out, "offset 0") {
		t.Fatalf("reset printed %q", out)
	}
	if out := mustRun(t, addr, "", "sub", "test.cli.dlq", "--group", "g", "--count", "2"); out != "bad\ngood\n" {
		t.Fatalf("after reset sub printed %q, want bad and good again", out)
	}
	if _, errOut, code := run(t, addr, "", "group", "reset", "test.cli.dlq", "g", "--to", "yesterday"); code == 0 || !strings.Contains(errOut, "RFC 3339") {
		t.Fatalf("reset to garbage: exit %d, %q", code, errOut)
	}
}

// The registry from the command line: a prod topic waits for another
// person's approval.
func TestTopicApprovalCommands(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	if out := mustRun(t, addr, "", "topic", "create", "prod.shop.orders", "--dept", "shop", "--owner", "alice", "--requested-by", "alice"); !strings.Contains(out, "pending") {
		t.Fatalf("create printed %q, want pending", out)
	}
	if _, errOut, code := run(t, addr, "", "pub", "prod.shop.orders", "x"); code == 0 || !strings.Contains(errOut, "FailedPrecondition") {
		t.Fatalf("pub to pending topic: exit %d %q", code, errOut)
	}
	if _, errOut, code := run(t, addr, "", "topic", "approve", "prod.shop.orders", "--by", "alice"); code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Fatalf("self-approval: exit %d %q", code, errOut)
	}
	if list := mustRun(t, addr, "", "topic", "list", "--status", "pending", "--env", "prod"); !strings.Contains(list, "prod.shop.orders") {
		t.Fatalf("pending list = %q", list)
	}
	if out := mustRun(t, addr, "", "topic", "approve", "prod.shop.orders", "--by", "bob", "--reason", "ok"); !strings.Contains(out, "approved (by bob)") {
		t.Fatalf("approve printed %q", out)
	}
	mustRun(t, addr, "", "pub", "prod.shop.orders", "x")
	if show := mustRun(t, addr, "", "topic", "show", "prod.shop.orders"); !strings.Contains(show, `requested by "alice"; approved by "bob"`) {
		t.Fatalf("show = %q", show)
	}
	if list := mustRun(t, addr, "", "topic", "list", "--status", "pending"); strings.Contains(list, "prod.shop.orders") {
		t.Fatalf("approved topic still listed as pending: %q", list)
	}
}

func TestCommandLineErrorsAreClear(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"pub", "test.no.such", "x"}, `NotFound: topic "test.no.such" does not exist`},
		{[]string{"topic", "create", "nodots"}, "InvalidArgument: topic name"},
		{[]string{"sub", "test.no.such"}, "--group is required"},
		{[]string{"group", "create", "test.a.b", "g", "--mode", "fanout"}, `--mode "fanout"`},
		{[]string{"pub", "test.a.b", "--header", "novalue", "x"}, `--header "novalue"`},
	}
	for _, tc := range cases {
		_, errOut, code := run(t, addr, "", tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("dmq %s: exit %d stderr %q, want failure with %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// `dmq server` as a process takes its settings from a config file and the
// environment, stops cleanly on SIGINT, and refuses a bad setting.
func TestServerProcessConfigFileAndSignals(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "dmq.yaml")
	os.WriteFile(cfgPath, []byte("no_sync: true\nmax_body_bytes: 2048\n"), 0o644)
	p := dmqtest.StartProcess(t, filepath.Join(dir, "data"), "--config", cfgPath)
	if !strings.Contains(p.Logs(), "NO fsync before ack") {
		t.Errorf("server did not announce no-sync from the config file:\n%s", p.Logs())
	}
	mustRun(t, p.Addr, "", "topic", "create", "test.cfg.x")
	_, errOut, _ := run(t, p.Addr, "", "pub", "test.cfg.x", strings.Repeat("y", 3000))
	if !strings.Contains(errOut, "exceeds the limit of 2048 bytes") {
		t.Errorf("config max_body_bytes not applied: %q", errOut)
	}
	p.Stop(t)

	var sout, serr bytes.Buffer
	t.Setenv("DMQ_ACK_TIMEOUT", "never")
	if code := Main([]string{"server", "--data", t.TempDir()}, nil, &sout, &serr); code == 0 || !strings.Contains(serr.String(), "DMQ_ACK_TIMEOUT") {
		t.Errorf("bad env setting: exit %d, stderr %q", code, serr.String())
	}
}
