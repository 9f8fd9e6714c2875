// Package dmqtest starts real DMQ servers for tests: in-process on
// 127.0.0.1:0 in a temporary directory, or as a separate `dmq` process that
// a test can kill. Servers stop when the test ends.
package dmqtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/server"
)

// OneVoter reports whether the servers this package starts without cluster settings
// are one-voter clusters, as a plain `dmq server` is. With DMQTEST_STANDALONE set they
// are standalone servers (--standalone) instead, so that the suites also check the
// broker without Raft.
func OneVoter() bool { return os.Getenv("DMQTEST_STANDALONE") == "" }

// Server is an in-process server.
type Server struct {
	*server.Server
	Config config.Config
}

// Start runs a server in dir (a new temporary directory when empty) and
// stops it at the end of the test. edit, when not nil, adjusts the config.
func Start(t testing.TB, dir string, edit func(*config.Config)) *Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := Config(dir)
	if edit != nil {
		before := cfg
		edit(&cfg)
		if cfg.NodeID != before.NodeID || cfg.ClusterListen != before.ClusterListen || cfg.Peers != "" || cfg.Join {
			cfg.Standalone = false // the test asks for a cluster node
		}
	}
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	srv := &Server{Server: s, Config: cfg}
	t.Cleanup(func() { srv.Stop(t) })
	return srv
}

// Config is the configuration Start gives a server in dir: the defaults, on free
// loopback ports, a one-voter cluster unless DMQTEST_STANDALONE is set.
func Config(dir string) config.Config {
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.HTTP, cfg.Version = dir, "127.0.0.1:0", "127.0.0.1:0", "test"
	if OneVoter() {
		cfg.ClusterListen = "127.0.0.1:0"
	} else {
		cfg.Standalone = true
	}
	return cfg
}

// Stop shuts the server down; safe to call twice.
func (s *Server) Stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// Dial connects an SDK client to addr and closes it at the end of the test.
func Dial(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(addr, opts...)
	if err != nil {
		t.Fatalf("client.Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Eventually polls cond every 10 ms until it is true or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/dmq once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "dmq-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dmq")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/dmq")
		if os.Getenv("DMQTEST_NORACE") != "" {
			cmd = exec.Command("go", "build", "-o", binPath, "./cmd/dmq")
		}
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/dmq: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Process is a `dmq server` running as a child process.
type Process struct {
	Cmd  *exec.Cmd
	Addr string
	HTTP string
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

var listenRE = regexp.MustCompile(`listening: gRPC (\S+), HTTP http://([^/]+)/`)

// StartProcess runs `dmq server --data dir` on free loopback ports plus
// extra flags, and waits until it listens. The process is killed at the
// end of the test if still running.
func StartProcess(t testing.TB, dir string, extra ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, dir, nil, extra...)
}

// StartProcessEnv is StartProcess with env added to the server's
// environment (for example to arm crash points).
func StartProcessEnv(t testing.TB, dir string, env []string, extra ...string) *Process {
	t.Helper()
	args := append([]string{"server", "--data", dir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"}, extra...)
	switch {
	case slices.Contains(extra, "--cluster-listen") || slices.Contains(extra, "--standalone"):
	case OneVoter():
		args = append(args, "--cluster-listen", "127.0.0.1:0")
	case !slices.Contains(extra, "--node-id"):
		args = append(args, "--standalone")
	}
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dmq server: %v", err)
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() { p.Kill() })
	addrs := make(chan []string, 1)
	// Done only once both pipes are read to the end: Wait closes them, and a line the
	// process printed just before it died (a crash point's) would be lost.
	var read sync.WaitGroup
	read.Add(2)
	go func() { defer read.Done(); p.collect(stderr, nil) }()
	go func() { defer read.Done(); p.collect(stdout, addrs) }()
	go func() { read.Wait(); cmd.Wait(); close(p.done) }()
	select {
	case a := <-addrs:
		p.Addr, p.HTTP = a[0], a[1]
	case <-p.done:
		t.Fatalf("dmq server exited before listening:\n%s", p.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("dmq server did not report listening within 30s:\n%s", p.Logs())
	}
	return p
}

func (p *Process) collect(r io.Reader, addrs chan<- []string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs.WriteString(line + "\n")
		p.mu.Unlock()
		if addrs != nil {
			if m := listenRE.FindStringSubmatch(line); m != nil {
				addrs <- m[1:]
				addrs = nil
			}
		}
	}
}

// Logs returns everything the process printed so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("dmq server did not stop within 20s of SIGINT:\n%s", p.Logs())
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("dmq server exited with %d:\n%s", code, p.Logs())
	}
}

// Dump ends the process with SIGQUIT, so that Go prints every goroutine's stack,
// and returns everything it printed: for a test that found the server stuck.
func (p *Process) Dump() string {
	p.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
	return p.Logs()
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// FreePort returns a loopback address that was free a moment ago, for a server the
// test starts (and restarts) on a fixed port. It is picked at random below the
// system's ephemeral range: a port the kernel handed out for ":0" would often be handed
// out again, to another test's server or to an outgoing connection, before the test
// binds it (a CI run failed so, "address already in use"). Where the range is unknown
// it falls back to such a port.
func FreePort(t testing.TB) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	if lo, hi, ok := belowEphemeral(); ok {
		for range 100 {
			port := lo + rand.IntN(hi-lo)
			if freePorts.given[port] {
				continue
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				continue
			}
			l.Close()
			freePorts.given[port] = true
			return l.Addr().String()
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// freePorts are the ports FreePort gave in this process, not given twice.
var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// belowEphemeral returns up to 10,000 ports just below the system's ephemeral range
// (Linux: /proc/sys/net/ipv4/ip_local_port_range).
func belowEphemeral() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil || first < 11000 {
		return 0, 0, false
	}
	return max(first-10000, 10000), first, true
}

// MountTmpfs mounts a tmpfs of size ("24m") at a new directory, unmounted at the end of
// the test, for a disk that fills up. It needs root; without it the test is skipped,
// unless DMQ_REQUIRE_TMPFS=1 (CI as root) makes that a failure.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, out)
		if os.Getenv("DMQ_REQUIRE_TMPFS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// Tail is the last n lines of s: a server's logs cut to what a failure report needs.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
