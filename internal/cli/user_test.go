package cli

import (
	"strings"
	"testing"

	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Users and the audit log through the command line: an administrator's
// token adds users of each role (the password from stdin, never a flag),
// lists and deletes them, and reads the audit log filtered by action and
// actor; a non-administrator's token is refused; a bad role, a short
// password and a missing one are refused before or by the broker.
func TestUserAndAuditCommands(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	admin := strings.TrimSpace(mustRun(t, s.GRPCAddr(), "", "token", "create", "ops", "--admin"))
	s.Stop(t)
	s = dmqtest.Start(t, dir, func(c *config.Config) { c.Auth = true })
	addr := s.GRPCAddr()

	if out := mustRun(t, addr, "s3cret-root\n", "--token", admin, "user", "add", "root", "--admin", "--password-stdin"); !strings.Contains(out, "added user root (admin)") {
		t.Fatalf("user add root --admin printed %q", out)
	}
	if out := mustRun(t, addr, "alice-pass", "--token", admin, "user", "add", "alice", "--role", "owner", "--dept", "shop", "--password-stdin"); !strings.Contains(out, "owner of shop") {
		t.Fatalf("user add alice --role owner printed %q", out)
	}
	mustRun(t, addr, "viewer-pass\n", "--token", admin, "user", "add", "vic", "--role", "viewer", "--password-stdin")

	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"no role", "long-enough\n", []string{"user", "add", "x", "--password-stdin"}, "--role"},
		{"admin and another role", "long-enough\n", []string{"user", "add", "x", "--admin", "--role", "viewer", "--password-stdin"}, "contradict"},
		{"bad role", "long-enough\n", []string{"user", "add", "x", "--role", "boss", "--password-stdin"}, "InvalidArgument"},
		{"short password", "short\n", []string{"user", "add", "x", "--role", "viewer", "--password-stdin"}, "InvalidArgument"},
		{"empty stdin", "", []string{"user", "add", "x", "--role", "viewer", "--password-stdin"}, "no password"},
		{"no terminal to prompt", "", []string{"user", "add", "x", "--role", "viewer"}, "--password-stdin"},
		{"existing user", "long-enough\n", []string{"user", "add", "alice", "--role", "viewer", "--password-stdin"}, "AlreadyExists"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := run(t, addr, c.stdin, append([]string{"--token", admin}, c.args...)...)
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("dmq %s: exit %d, stderr %q; want a failure mentioning %q", strings.Join(c.args, " "), code, errOut, c.want)
			}
		})
	}

	list := mustRun(t, addr, "", "--token", admin, "user", "list")
	for _, want := range []string{"USER", "root", "alice", "owner", "shop", "vic", "viewer", "app:ops"} {
		if !strings.Contains(list, want) {
			t.Fatalf("user list:\n%s\nwant %q in it", list, want)
		}
	}
	if strings.Contains(list, "alice-pass") || strings.Contains(list, "$2") {
		t.Fatalf("user list shows a password or its hash:\n%s", list)
	}

	// A token that is not an administrator's may not manage users or read
	// the audit log.
	shop := strings.TrimSpace(mustRun(t, addr, "", "--token", admin, "token", "create", "shop", "--manage", "prod.shop.*"))
	for _, args := range [][]string{{"user", "list"}, {"user", "delete", "vic"}, {"audit"}} {
		if _, errOut, code := run(t, addr, "long-enough\n", append([]string{"--token", shop}, args...)...); code == 0 || !strings.Contains(errOut, "PermissionDenied") {
			t.Errorf("dmq %s with a manage token: exit %d, %s; want PermissionDenied", strings.Join(args, " "), code, errOut)
		}
	}
	if _, errOut, code := run(t, addr, "long-enough\n", "--token", shop, "user", "add", "eve", "--admin", "--password-stdin"); code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Errorf("user add with a manage token: exit %d, %s; want PermissionDenied", code, errOut)
	}
	if _, errOut, code := run(t, addr, "", "user", "list"); code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Errorf("user list without a token: exit %d, %s; want Unauthenticated", code, errOut)
	}

	if out := mustRun(t, addr, "", "--token", admin, "user", "delete", "vic"); !strings.Contains(out, "deleted user vic") {
		t.Fatalf("user delete printed %q", out)
	}
	if list := mustRun(t, addr, "", "--token", admin, "user", "list"); strings.Contains(list, "vic") {
		t.Fatalf("user list after deleting vic:\n%s", list)
	}

	// The audit log: newest first, filtered by action and actor.
	mustRun(t, addr, "", "--token", shop, "topic", "create", "prod.shop.orders", "--owner", "alice")
	mustRun(t, addr, "", "--token", admin, "topic", "approve", "prod.shop.orders")
	out := mustRun(t, addr, "", "--token", admin, "audit")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("audit printed:\n%s\nwant a header and entries", out)
	}
	for _, want := range []string{"user.create", "user.delete", "token.create", "topic.approve", "app:ops"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit:\n%s\nwant %q in it", out, want)
		}
	}
	if i, j := strings.Index(out, "topic.approve"), strings.Index(out, "user.create"); i > j {
		t.Errorf("audit:\n%s\nwant the newest (topic.approve) before the oldest (user.create)", out)
	}
	approvals := mustRun(t, addr, "", "--token", admin, "audit", "--action", "topic.approve", "--who", "app:ops")
	if rows := strings.Split(strings.TrimSpace(approvals), "\n"); len(rows) != 2 || !strings.Contains(rows[1], "prod.shop.orders") {
		t.Errorf("audit --action topic.approve --who app:ops:\n%s\nwant one entry for prod.shop.orders", approvals)
	}
	if none := mustRun(t, addr, "", "--token", admin, "audit", "--from", "2000-01-01T00:00:00Z", "--to", "2000-01-02T00:00:00Z"); strings.Count(none, "\n") != 1 {
		t.Errorf("audit over a day in 2000:\n%s\nwant only the header", none)
	}
	if one := mustRun(t, addr, "", "--token", admin, "audit", "--limit", "1"); strings.Count(one, "\n") != 2 {
		t.Errorf("audit --limit 1:\n%s\nwant the header and one entry", one)
	}
	if _, errOut, code := run(t, addr, "", "--token", admin, "audit", "--from", "yesterday"); code == 0 || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("audit --from yesterday: exit %d, %s", code, errOut)
	}
}
