package fault_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/server"
)

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startDir starts a standalone server on real files in dir, returning Start's
// error instead of failing, and the server's log.
//
// Standalone: on a cluster node (a plain dmq server) the topic logs are a copy of
// the Raft log, and a restart replays the entries after the last snapshot into them
// (a topic created after it is rebuilt whole), which repairs most of the damage made
// here. The damage the Raft log cannot repair is checked on a node by
// TestANodeRefusesTopicLogsWithoutTheirMetadata and, for a torn tail, by the e2e
// kill -9 tests.
func startDir(t *testing.T, dir string) (*server.Server, *logBuffer, error) {
	t.Helper()
	return startConfig(t, dmqtest.Config(dir), true)
}

// startConfig is startDir with cfg, standalone or as a one-voter node.
func startConfig(t *testing.T, cfg config.Config, standalone bool) (*server.Server, *logBuffer, error) {
	t.Helper()
	cfg.Standalone = standalone
	cfg.SegmentBytes = 1 << 20
	logs := &logBuffer{}
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		return nil, logs, err
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, logs, nil
}

// corpus publishes n messages of about 1 KiB (over several 1 MiB
// segments) to a fresh data directory and stops the broker.
func corpus(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, _, err := startDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	p := c.NewProducer(topicName)
	for i := 0; i < n; i++ {
		if err := p.PublishAsync(ctx, &client.Message{Body: []byte(body(i))}, func(_ client.PublishResult, err error) {
			if err != nil {
				t.Error(err)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return dir
}

func body(i int) string { return fmt.Sprintf("message %05d %s", i, strings.Repeat("x", 1000)) }

// segments returns the topic's segment files, oldest first.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "topics", topicName, "*.log"))
	if err != nil || len(files) < 3 {
		t.Fatalf("segments: %v, %v; want at least 3", files, err)
	}
	sort.Strings(files)
	return files
}

// copyDir copies a data directory, so each case damages its own.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// recovered starts a server on a damaged data directory, which must
// start, and reads every stored message, which must all read.
func recovered(t *testing.T, dir string) (*logBuffer, []string) {
	t.Helper()
	s, logs, err := startDir(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(s)
	if err != nil {
		t.Fatal(err)
	}
	return logs, got
}

// readAll reads every stored message; it returns the bodies read and the
// first error.
func readAll(s *server.Server) ([]string, error) {
	b := s.Broker()
	ti, err := b.GetTopic(topicName)
	if err != nil {
		return nil, err
	}
	var out []string
	for off := ti.FirstOffset; off < ti.NextOffset; off++ {
		m, err := b.Read(topicName, off)
		if err != nil {
			return out, err
		}
		out = append(out, string(m.Body))
	}
	return out, nil
}

func wantBodies(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d messages read back, want %d", len(got), n)
	}
	for i, b := range got {
		if b != body(i) {
			t.Fatalf("message %d reads %.20q, want %.20q", i, b, body(i))
		}
	}
}

// Damaged files: the broker rebuilds what the log can rebuild, cuts a
// torn tail and says so, and otherwise refuses to serve (or to start) with
// an error naming the file and the position; it never serves wrong data.
func TestDamagedFilesAreRecoveredOrReported(t *testing.T) {
	const n = 3000
	clean := corpus(t, n)

	t.Run("missing index", func(t *testing.T) {
		dir := copyDir(t, clean)
		idx := strings.TrimSuffix(segments(t, dir)[0], ".log") + ".idx"
		if err := os.Remove(idx); err != nil {
			t.Fatal(err)
		}
		logs, got := recovered(t, dir)
		wantBodies(t, got, n)
		if _, err := os.Stat(idx); err != nil || !strings.Contains(logs.String(), "rebuilding segment index") {
			t.Fatalf("index not rebuilt (%v); log:\n%s", err, logs)
		}
	})

	t.Run("corrupt index", func(t *testing.T) {
		dir := copyDir(t, clean)
		idx := strings.TrimSuffix(segments(t, dir)[1], ".log") + ".idx"
		if err := os.WriteFile(idx, []byte("garbage, not an index"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, got := recovered(t, dir)
		wantBodies(t, got, n)
	})

	t.Run("zero-filled tail", func(t *testing.T) {
		// What a crash leaves of the space preallocated ahead of the records.
		dir := copyDir(t, clean)
		segs := segments(t, dir)
		appendFile(t, segs[len(segs)-1], make([]byte, 8192))
		logs, got := recovered(t, dir)
		wantBodies(t, got, n)
		if !strings.Contains(logs.String(), "dropped the zero-filled (preallocated) tail") || strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("the zero tail is not reported as preallocated space (or a warning was logged); log:\n%s", logs)
		}
	})

	t.Run("non-zero bytes after a zero-filled stretch", func(t *testing.T) {
		dir := copyDir(t, clean)
		segs := segments(t, dir)
		appendFile(t, segs[len(segs)-1], append(make([]byte, 8192), "stale"...))
		logs, got := recovered(t, dir)
		wantBodies(t, got, n)
		if !strings.Contains(logs.String(), "truncated torn or corrupt tail") {
			t.Fatalf("a tail that is not all zeros is not reported as damage; log:\n%s", logs)
		}
	})

	t.Run("record cut in half", func(t *testing.T) {
		dir := copyDir(t, clean)
		segs := segments(t, dir)
		last := segs[len(segs)-1]
		st, _ := os.Stat(last)
		if err := os.Truncate(last, st.Size()-500); err != nil { // inside the last record
			t.Fatal(err)
		}
		logs, got := recovered(t, dir)
		wantBodies(t, got, n-1)
		if !strings.Contains(logs.String(), "truncated torn or corrupt tail") {
			t.Fatalf("the cut record is not reported; log:\n%s", logs)
		}
	})

	t.Run("flipped bit in a sealed segment", func(t *testing.T) {
		dir := copyDir(t, clean)
		seg := segments(t, dir)[0]
		flipByte(t, seg, 500_000)
		s, logs, err := startDir(t, dir)
		if err != nil {
			// Refusing is allowed, if it names the file and the position.
			if !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "at byte") {
				t.Fatalf("refused to start with %v; want the file and the position named", err)
			}
			t.Logf("refused to start: %v", err)
			return
		}
		got, err := readAll(s)
		if err == nil || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "at byte") {
			t.Fatalf("reading past the flipped bit: %d messages, error %v; want an error naming %s and the position", len(got), err, seg)
		}
		wantBodies(t, got, len(got))
		if len(got) == 0 || len(got) >= n {
			t.Fatalf("%d messages read before the damage", len(got))
		}
		// A consumer gets everything before the damage, never the damaged one.
		c, err := client.Dial(s.GRPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: "reader", FromEarliest: true}); err != nil {
			t.Fatal(err)
		}
		// Room for a wrong delivery to show up after the good ones.
		delivered := received(t, c, "reader", len(got), 200*time.Millisecond)
		if len(delivered) != len(got) {
			t.Fatalf("consumer got %d messages, want the %d before the damage and nothing after", len(delivered), len(got))
		}
		for i := range got {
			if delivered[body(i)] == 0 {
				t.Fatalf("message %d before the damage was not delivered", i)
			}
		}
		if !strings.Contains(logs.String(), seg) {
			t.Fatalf("the damage is not in the server log:\n%s", logs)
		}
	})

	t.Run("missing metadata store", func(t *testing.T) {
		dir := copyDir(t, clean)
		if err := os.RemoveAll(filepath.Join(dir, "meta")); err != nil {
			t.Fatal(err)
		}
		_, _, err := startDir(t, dir)
		if err == nil || !strings.Contains(err.Error(), "meta") || !strings.Contains(err.Error(), topicName) {
			t.Fatalf("start without the metadata store but with topic logs: %v; want a refusal naming the store and the topic", err)
		}
	})

	t.Run("missing segment", func(t *testing.T) {
		dir := copyDir(t, clean)
		seg := segments(t, dir)[1]
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
		s, _, err := startDir(t, dir)
		if err != nil {
			if !strings.Contains(err.Error(), topicName) {
				t.Fatalf("refused to start with %v; want the topic named", err)
			}
			t.Logf("refused to start: %v", err)
			return
		}
		got, err := readAll(s)
		if err == nil {
			t.Fatalf("a log with a missing segment reads %d messages without an error", len(got))
		}
		wantBodies(t, got, len(got))
	})
}

// TestANodeRefusesTopicLogsWithoutTheirMetadata: a node whose data directory lost its
// metadata store but kept its topic logs refuses to start, as a standalone server does:
// after a snapshot its Raft log no longer holds what the store held, and an empty store
// would hide every topic.
func TestANodeRefusesTopicLogsWithoutTheirMetadata(t *testing.T) {
	dir := t.TempDir()
	s, _, err := startConfig(t, dmqtest.Config(dir), false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewProducer(topicName).Publish(ctx, &client.Message{Body: []byte(body(0))}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "meta")); err != nil {
		t.Fatal(err)
	}
	_, _, err = startConfig(t, dmqtest.Config(dir), false)
	if err == nil || !strings.Contains(err.Error(), "meta") || !strings.Contains(err.Error(), topicName) {
		t.Fatalf("a node without its metadata store but with topic logs started: %v; want a refusal naming the store and the topic", err)
	}
	// Standalone on a node's data directory: refused too, it would change the shard
	// behind its Raft log.
	if err := os.MkdirAll(filepath.Join(dir, "meta"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err = startConfig(t, dmqtest.Config(dir), true)
	if err == nil || !strings.Contains(err.Error(), "cluster node") {
		t.Fatalf("standalone on a node's data directory: %v; want a refusal", err)
	}
}

func appendFile(t *testing.T, path string, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(p); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}
