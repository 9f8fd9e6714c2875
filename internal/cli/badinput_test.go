package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/dmqio/dmq/internal/dmqtest"
)

// A typo in a subcommand fails loudly (exit 1, "unknown command"), as a script needs;
// a command that only groups others still prints its help without arguments.
func TestUnknownSubcommandFails(t *testing.T) {
	for _, args := range [][]string{{"group", "pause"}, {"topic", "lsit"}, {"cluster", "bogus"}, {"dlq", "purg"}, {"bogus"}} {
		out, errOut, code := run(t, "127.0.0.1:1", "", args...)
		if code == 0 || !strings.Contains(errOut, "unknown command") || !strings.Contains(errOut, args[len(args)-1]) {
			t.Errorf("dmq %s: exit %d, stdout %q, stderr %q; want a non-zero exit saying unknown command", strings.Join(args, " "), code, out, errOut)
		}
	}
	if _, errOut, _ := run(t, "127.0.0.1:1", "", "topic", "lsit"); !strings.Contains(errOut, "did you mean list?") {
		t.Errorf("dmq topic lsit: %q, want a suggestion", errOut)
	}
	for _, args := range [][]string{{"group"}, {"topic", "--help"}, {"group", "list", "--help"}} {
		if out, errOut, code := run(t, "127.0.0.1:1", "", args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("dmq %s: exit %d, stdout %q, stderr %q; want the help", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// Empty lines on dmq pub's standard input are skipped, not sent (one refused the whole
// batch and the error named another line); a line refused is named by its number.
func TestPubSkipsEmptyLines(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	mustRun(t, addr, "", "topic", "create", "test.cli.lines")
	mustRun(t, addr, "", "group", "create", "test.cli.lines", "g")
	ids := strings.Fields(mustRun(t, addr, "a\n\nb\n\n\nc\n", "pub", "test.cli.lines"))
	if strings.Join(ids, ",") != "0,1,2" {
		t.Fatalf("pub printed %v, want ids 0,1,2 for the three non-empty lines", ids)
	}
	if out := mustRun(t, addr, "", "sub", "test.cli.lines", "--group", "g", "--idle", "300ms"); out != "a\nb\nc\n" {
		t.Fatalf("sub printed %q, want a b c", out)
	}
}

// --delay and --at exclude each other; a deliver-at beyond the server's --max-delay is
// refused, also after the year 2262 (it overflowed into "now").
func TestPubRefusesDelaysOutOfRange(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	addr := s.GRPCAddr()
	mustRun(t, addr, "", "topic", "create", "test.cli.delays")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--delay", "1m", "--at", "2030-01-01T00:00:00Z"}, "--delay and --at exclude each other"},
		{[]string{"--at", "2263-01-01T00:00:00Z"}, "maximum delay"},
		{[]string{"--at", "9999-01-01T00:00:00Z"}, "maximum delay"},
		{[]string{"--delay", "2000000h"}, "maximum delay"},
	} {
		args := append([]string{"pub", "test.cli.delays", "x"}, tc.args...)
		out, errOut, code := run(t, addr, "", args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("dmq %s: exit %d, stdout %q, stderr %q; want a failure with %q", strings.Join(args, " "), code, out, errOut, tc.want)
		}
	}
	// Nothing was stored or scheduled.
	c := dmqtest.Dial(t, addr)
	tp, err := c.GetTopic(context.Background(), "test.cli.delays")
	if err != nil || tp.Stats.NextOffset != 0 || tp.Stats.DelayedPending != 0 {
		t.Fatalf("refused publishes changed the topic: %+v, %v", tp.GetStats(), err)
	}
}
