package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLogAdapter: raft's hclog lines reach slog with their fields, the logger's name and
// With arguments, and lines below the configured level are dropped.
func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})), hclogLevel(slog.LevelInfo))
	l.Debug("hidden", "k", 1)
	l.Named("raft").Named("transport").With("peer", "n2").Warn("failed to heartbeat", "err", "boom")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Fatalf("a debug line passed an info-level logger: %s", out)
	}
	for _, want := range []string{"level=WARN", `msg="failed to heartbeat"`, "component=raft.transport", "peer=n2", "err=boom"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log line %q lacks %q", out, want)
		}
	}
	buf.Reset()
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []string{"n1"}))
	if out := buf.String(); !strings.Contains(out, "servers=[n1]") {
		t.Fatalf("an hclog.Fmt value is not formatted: %s", out)
	}
	buf.Reset()
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "", "last-leader-id", "")
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "127.0.0.1:7431", "last-leader-id", "n1")
	if out := buf.String(); strings.Count(out, "level=INFO") != 1 || strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "last-leader-id=n1") {
		t.Fatalf("the first election of a node is not news at info, or a lost leader not a warning:\n%s", out)
	}
	if !l.IsInfo() || l.IsDebug() || l.GetLevel() != hclog.Info {
		t.Fatalf("level reporting: IsInfo %v IsDebug %v GetLevel %v", l.IsInfo(), l.IsDebug(), l.GetLevel())
	}
}
