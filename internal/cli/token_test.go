package cli

import (
	"strings"
	"testing"

	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Tokens through the command line: an administrator creates, lists and
// revokes application tokens; every command takes --token (or
// DMQ_TOKEN), benchmarks included; a missing token is refused.
func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	admin := strings.TrimSpace(mustRun(t, s.GRPCAddr(), "", "token", "create", "ops", "--admin"))
	if !strings.HasPrefix(admin, "dmq_") {
		t.Fatalf("token create printed %q, want a dmq_ token", admin)
	}
	s.Stop(t)
	s = dmqtest.Start(t, dir, func(c *config.Config) { c.Auth = true })
	addr := s.GRPCAddr()
	if _, errOut, code := run(t, addr, "", "topic", "list"); code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("topic list without a token: exit %d, %s", code, errOut)
	}
	mustRun(t, addr, "", "--token", admin, "topic", "create", "test.cli.t", "--owner", "alice")
	shop := strings.TrimSpace(mustRun(t, addr, "", "--token", admin, "token", "create", "shop", "--publish", "test.cli.*", "--subscribe", "test.cli.*:billing"))
	list := mustRun(t, addr, "", "--token", admin, "token", "list")
	if !strings.Contains(list, "shop") || !strings.Contains(list, "test.cli.*: publish") || !strings.Contains(list, "subscribe(billing)") || strings.Contains(list, shop) {
		t.Fatalf("token list:\n%s\nwant shop's grants and never the token itself", list)
	}
	mustRun(t, addr, "", "--token", shop, "pub", "test.cli.t", "hello")
	if _, errOut, code := run(t, addr, "", "--token", shop, "token", "list"); code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Fatalf("a non-administrator listing tokens: exit %d, %s", code, errOut)
	}
	if out := mustRun(t, addr, "", "--token", admin, "bench", "--count", "200", "--json"); !strings.Contains(out, `"failed":0`) {
		t.Fatalf("bench with a token: %s", out)
	}
	mustRun(t, addr, "", "--token", admin, "token", "revoke", "shop")
	if _, errOut, code := run(t, addr, "", "--token", shop, "pub", "test.cli.t", "again"); code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("publish with a revoked token: exit %d, %s", code, errOut)
	}
}
