package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// Clients that end instead of hanging (issue 20): a producer gives up when its
// retry budget is spent, dmq pub and dmq sub stop on signals, and a consumer
// stops on errors that cannot heal.

// cliProcess is a dmq command-line client running as a child process, its
// standard input a pipe the test writes to.
type cliProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	mu    sync.Mutex
	out   []string // standard output, by line
	err   strings.Builder
}

func startCLI(t *testing.T, addr string, args ...string) *cliProcess {
	t.Helper()
	cmd := exec.Command(dmqtest.Binary(t), append([]string{"--server", addr}, args...)...)
	p := &cliProcess{cmd: cmd, done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	var read sync.WaitGroup
	read.Add(2)
	go func() {
		defer read.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		defer read.Done()
		b, _ := io.ReadAll(stderr)
		p.mu.Lock()
		p.err.Write(b)
		p.mu.Unlock()
	}()
	go func() { read.Wait(); cmd.Wait(); close(p.done) }()
	return p
}

// lines is the number of lines printed on standard output so far.
func (p *cliProcess) lines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.out)
}

func (p *cliProcess) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err.String()
}

// feed writes numbered lines to the process's input until it stops reading (or
// n were written; n < 0: no limit), then closes the input if close is set.
func (p *cliProcess) feed(n int, close bool) {
	go func() {
		w := bufio.NewWriter(p.stdin)
		for i := 0; n < 0 || i < n; i++ {
			if _, err := fmt.Fprintf(w, "line-%d\n", i); err != nil {
				return // the process exited
			}
		}
		if w.Flush() == nil && close {
			p.stdin.Close()
		}
	}()
}

// signal sends sig and returns the exit code, failing unless the process exits
// within the deadline.
func (p *cliProcess) signal(t *testing.T, sig os.Signal, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return p.wait(t, within, fmt.Sprintf("exit after %v", sig))
}

// wait returns the exit code once the process exited, failing after within.
func (p *cliProcess) wait(t *testing.T, within time.Duration, what string) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("dmq %s: no %s within %v; stderr:\n%s", strings.Join(p.cmd.Args[3:], " "), what, within, p.stderr())
		return 0
	}
}

// storedRE reads dmq pub's summary.
var storedRE = regexp.MustCompile(`(\d+) of (\d+) lines read were stored`)

// A Producer whose broker is SIGKILLed and does not come back fails every
// unanswered message — hundreds of batches in flight, held and queued — once its
// budget is spent since the first failure (not once per batch), and then fails
// new messages at once instead of blocking PublishAsync for another budget.
func TestProducerGivesUpWhenItsBudgetIsSpent(t *testing.T) {
	const topic = "test.end.producer"
	srv := dmqtest.StartProcess(t, t.TempDir())
	policy := client.RetryPolicy{Attempts: 1000, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, MaxElapsed: 1500 * time.Millisecond}
	c := dmqtest.Dial(t, srv.Addr, client.WithRetry(policy))
	setupTopic(t, c, topic)
	prod := c.NewProducer(topic, client.MaxInFlight(2000), client.BatchSize(10))

	var sent, stored, failed atomic.Int64
	var mu sync.Mutex
	var firstFailure time.Time
	var badErr error // a failure that is not the spent budget
	done := func(_ client.PublishResult, err error) {
		if err == nil {
			stored.Add(1)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if failed.Add(1) == 1 {
			firstFailure = time.Now()
		}
		if badErr == nil && (client.Code(err) != codes.Unavailable || !errors.Is(err, client.ErrRetriesExhausted)) {
			badErr = err
		}
	}
	// The publisher runs until told to stop; after the give-up it must not block.
	stop := make(chan struct{})
	publisherDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := 0; ; i++ {
			select {
			case <-stop:
				publisherDone <- nil
				return
			default:
			}
			if err := prod.PublishAsync(ctx, &client.Message{Body: []byte(fmt.Sprint("m", i))}, done); err != nil {
				publisherDone <- err
				return
			}
			sent.Add(1)
		}
	}()
	dmqtest.Eventually(t, 30*time.Second, "2,000 messages stored", func() bool { return stored.Load() >= 2000 })
	srv.Kill()
	killed := time.Now()

	// The budget counts from the first failure, after the kill; every message
	// unanswered then fails with the last error at about the same time.
	dmqtest.Eventually(t, policy.MaxElapsed+20*time.Second, "the producer to give up", func() bool { return failed.Load() > 0 })
	mu.Lock()
	gaveUpAfter := firstFailure.Sub(killed)
	mu.Unlock()
	if gaveUpAfter < policy.MaxElapsed {
		t.Errorf("the first message failed %v after the kill, before the budget of %v", gaveUpAfter, policy.MaxElapsed)
	}
	// New messages keep coming and fail at once: a thousand more get their answer quickly.
	failedThen := failed.Load()
	dmqtest.Eventually(t, 20*time.Second, "1,000 more messages to fail", func() bool { return failed.Load() >= failedThen+1000 })
	close(stop)
	if err := <-publisherDone; err != nil {
		t.Fatalf("PublishAsync after the give-up: %v", err)
	}
	closeStart := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- prod.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(policy.MaxElapsed + 20*time.Second):
		t.Fatal("Close did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	if badErr != nil {
		t.Fatalf("a message failed with %v, want Unavailable wrapping ErrRetriesExhausted", badErr)
	}
	if n, s, f := sent.Load(), stored.Load(), failed.Load(); s+f != n {
		t.Fatalf("%d sent, %d stored, %d failed: %d never answered", n, s, f, n-s-f)
	}
	t.Logf("first failure %v after the kill (budget %v), Close took %v; %d stored, %d failed",
		gaveUpAfter.Round(time.Millisecond), policy.MaxElapsed, time.Since(closeStart).Round(time.Millisecond), stored.Load(), failed.Load())
}

// dmq pub reading lines without end from standard input, whose broker is
// SIGKILLed and not restarted, exits with 1 once --retry-for has passed,
// printing how many lines were stored and the error.
func TestPubGivesUpWhenItsBrokerIsKilled(t *testing.T) {
	const topic = "test.end.pub"
	const budget = 2 * time.Second
	srv := dmqtest.StartProcess(t, t.TempDir())
	setupTopic(t, dmqtest.Dial(t, srv.Addr), topic)
	pub := startCLI(t, srv.Addr, "pub", topic, "--retry-for", budget.String())
	pub.feed(-1, false)
	dmqtest.Eventually(t, 30*time.Second, "1,000 lines stored", func() bool { return pub.lines() >= 1000 })
	srv.Kill()
	killed := time.Now()
	code := pub.wait(t, budget+30*time.Second, "exit after the broker was killed")
	took := time.Since(killed)
	errOut := pub.stderr()
	if code != 1 {
		t.Fatalf("dmq pub exited with %d, want 1; stderr:\n%s", code, errOut)
	}
	m := storedRE.FindStringSubmatch(errOut)
	if m == nil || !strings.Contains(errOut, "Unavailable") || !strings.Contains(errOut, client.ErrRetriesExhausted.Error()) {
		t.Fatalf("stderr of dmq pub:\n%s\nwant how many lines were stored and the Unavailable error that spent the budget", errOut)
	}
	if n, _ := strconv.Atoi(m[1]); n != pub.lines() {
		t.Errorf("dmq pub says %s lines were stored, and printed %d ids", m[1], pub.lines())
	}
	if took < budget {
		t.Errorf("dmq pub gave up %v after the kill, before --retry-for %v", took, budget)
	}
	t.Logf("dmq pub exited %v after the broker was killed (--retry-for %v): %s", took.Round(time.Millisecond), budget, strings.TrimSpace(errOut))
}

// dmq pub and dmq sub stop on SIGINT and SIGTERM at any moment: waiting for
// input, while retrying a broker that went away, while consuming (after acking
// what was printed) and while waiting for the broker to come back.
func TestPubAndSubStopOnSignals(t *testing.T) {
	const topic, subTopic = "test.end.signals", "test.end.sigsub"
	srv := dmqtest.Start(t, "", nil)
	admin := dmqtest.Dial(t, srv.GRPCAddr())
	setupTopic(t, admin, topic)
	setupTopic(t, admin, subTopic, client.GroupSpec{Name: "g"})

	t.Run("pub waiting for input", func(t *testing.T) {
		pub := startCLI(t, srv.GRPCAddr(), "pub", topic)
		pub.feed(3, false) // the input stays open
		dmqtest.Eventually(t, 20*time.Second, "3 lines stored", func() bool { return pub.lines() == 3 })
		if code := pub.signal(t, os.Interrupt, 10*time.Second); code != 130 {
			t.Fatalf("dmq pub stopped by SIGINT exited with %d, want 130; stderr:\n%s", code, pub.stderr())
		}
		if errOut := pub.stderr(); !strings.Contains(errOut, "stopped by SIGINT") || !strings.Contains(errOut, "3 of 3 lines read were stored") {
			t.Fatalf("stderr of dmq pub:\n%s\nwant that SIGINT stopped it and that 3 of 3 lines were stored", errOut)
		}
	})

	t.Run("sub consuming", func(t *testing.T) {
		publishN(t, admin, subTopic, 3)
		sub := startCLI(t, srv.GRPCAddr(), "sub", subTopic, "--group", "g")
		dmqtest.Eventually(t, 20*time.Second, "3 messages printed", func() bool { return sub.lines() == 3 })
		if code := sub.signal(t, os.Interrupt, 10*time.Second); code != 130 {
			t.Fatalf("dmq sub stopped by SIGINT exited with %d, want 130; stderr:\n%s", code, sub.stderr())
		}
		waitAcked(t, admin, subTopic, "g", 3) // what it printed was acked
	})

	t.Run("while the broker is away", func(t *testing.T) {
		away := dmqtest.StartProcess(t, t.TempDir())
		setupTopic(t, dmqtest.Dial(t, away.Addr), topic, client.GroupSpec{Name: "g"})
		pub := startCLI(t, away.Addr, "pub", topic, "--retry-for", "10m")
		pub.feed(-1, false)
		sub := startCLI(t, away.Addr, "sub", topic, "--group", "g")
		dmqtest.Eventually(t, 20*time.Second, "messages stored and consumed", func() bool { return pub.lines() > 100 && sub.lines() > 100 })
		away.Kill()
		// Both are retrying now (dmq pub for up to 10 minutes).
		dmqtest.Eventually(t, 10*time.Second, "dmq pub to stop printing ids", func() bool {
			n := pub.lines()
			time.Sleep(100 * time.Millisecond)
			return pub.lines() == n
		})
		if code := pub.signal(t, syscall.SIGTERM, 10*time.Second); code != 143 {
			t.Fatalf("dmq pub stopped by SIGTERM while retrying exited with %d, want 143; stderr:\n%s", code, pub.stderr())
		}
		if errOut := pub.stderr(); !strings.Contains(errOut, "stopped by SIGTERM") || storedRE.FindString(errOut) == "" {
			t.Fatalf("stderr of dmq pub:\n%s\nwant that SIGTERM stopped it and how many lines were stored", errOut)
		}
		if code := sub.signal(t, syscall.SIGTERM, 10*time.Second); code != 143 {
			t.Fatalf("dmq sub stopped by SIGTERM while the broker is away exited with %d, want 143; stderr:\n%s", code, sub.stderr())
		}
	})
}

// A consumer whose token is revoked, or whose topic is deleted or disabled, ends
// with that error on Done and Err instead of re-attaching for ever; the errors
// it recovers from go to OnError, the final one does not.
func TestConsumerEndsOnErrorsThatCannotHeal(t *testing.T) {
	ctx := context.Background()
	s, adminToken := authServer(t)
	admin := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(adminToken))
	for _, topic := range []string{"test.end.revoked", "test.end.deleted"} {
		setupTopic(t, admin, topic, client.GroupSpec{Name: "g"})
	}
	tok := createToken(t, admin, &dmqv1.CreateTokenRequest{App: "billing", Grants: []*dmqv1.TokenGrant{{Pattern: "test.end.*", Subscribe: true, Groups: []string{"g"}}}})

	// attach subscribes with c, waits until a message from publisher arrives, and returns the consumer
	// and the errors passed to OnError.
	attach := func(t *testing.T, c, publisher *client.Client, topic string) (*client.Consumer, func() []error) {
		t.Helper()
		var mu sync.Mutex
		var seen []error
		got := make(chan struct{}, 1)
		k, err := c.Subscribe(ctx, topic, "g", func(context.Context, *client.Message) error {
			select {
			case got <- struct{}{}:
			default:
			}
			return nil
		}, client.OnError(func(err error) {
			mu.Lock()
			seen = append(seen, err)
			mu.Unlock()
		}))
		if err != nil {
			t.Fatalf("Subscribe(%s): %v", topic, err)
		}
		t.Cleanup(func() { k.Close() })
		if _, err := publisher.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("the consumer of %s got nothing", topic)
		}
		return k, func() []error {
			mu.Lock()
			defer mu.Unlock()
			return append([]error(nil), seen...)
		}
	}
	ended := func(t *testing.T, k *client.Consumer, onError func() []error, want codes.Code) {
		t.Helper()
		select {
		case <-k.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("the consumer did not end; OnError saw %v", onError())
		}
		if client.Code(k.Err()) != want {
			t.Fatalf("the consumer ended with %v, want %v", k.Err(), want)
		}
		if err := k.Close(); client.Code(err) != want {
			t.Fatalf("Close after the end: %v, want %v", err, want)
		}
		for _, err := range onError() {
			if client.Code(err) == want {
				t.Fatalf("OnError saw the final error %v", err)
			}
		}
	}

	t.Run("token revoked", func(t *testing.T) {
		billing := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(tok))
		k, onError := attach(t, billing, admin, "test.end.revoked")
		if _, err := admin.API().RevokeToken(ctx, &dmqv1.RevokeTokenRequest{App: "billing"}); err != nil {
			t.Fatal(err)
		}
		ended(t, k, onError, codes.Unauthenticated)
	})
	t.Run("topic deleted", func(t *testing.T) {
		k, onError := attach(t, admin, admin, "test.end.deleted")
		if err := admin.DeleteTopic(ctx, "test.end.deleted"); err != nil {
			t.Fatal(err)
		}
		ended(t, k, onError, codes.NotFound)
	})
	t.Run("topic disabled", func(t *testing.T) {
		// Disabling a topic leaves open subscriptions alone; the consumer learns of
		// it when it attaches again, here after a restart of its broker.
		dir := t.TempDir()
		grpcAddr, raftAddr := dmqtest.FreePort(t), dmqtest.FreePort(t)
		fixed := func(cfg *config.Config) {
			cfg.Listen = grpcAddr
			if !cfg.Standalone {
				cfg.ClusterListen = raftAddr
			}
		}
		b := dmqtest.Start(t, dir, fixed)
		c := dmqtest.Dial(t, grpcAddr)
		setupTopic(t, c, "test.end.disabled", client.GroupSpec{Name: "g"})
		k, onError := attach(t, c, c, "test.end.disabled")
		if _, err := c.DisableTopic(ctx, "test.end.disabled", "ops", "test"); err != nil {
			t.Fatal(err)
		}
		b.Stop(t)
		dmqtest.Start(t, dir, fixed)
		ended(t, k, onError, codes.FailedPrecondition)
		if len(onError()) == 0 {
			t.Errorf("OnError saw nothing of the restart")
		}
	})
}

// dmq sub whose token is revoked prints the error and exits with 1.
func TestSubExitsWhenItsTokenIsRevoked(t *testing.T) {
	const topic = "test.end.subtoken"
	ctx := context.Background()
	s, adminToken := authServer(t)
	admin := dmqtest.Dial(t, s.GRPCAddr(), client.WithToken(adminToken))
	setupTopic(t, admin, topic, client.GroupSpec{Name: "g"})
	tok := createToken(t, admin, &dmqv1.CreateTokenRequest{App: "reader", Grants: []*dmqv1.TokenGrant{{Pattern: topic, Subscribe: true, Groups: []string{"g"}}}})
	sub := startCLI(t, s.GRPCAddr(), "--token", tok, "sub", topic, "--group", "g")
	if _, err := admin.Publish(ctx, topic, &client.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 20*time.Second, "the message printed", func() bool { return sub.lines() == 1 })
	if _, err := admin.API().RevokeToken(ctx, &dmqv1.RevokeTokenRequest{App: "reader"}); err != nil {
		t.Fatal(err)
	}
	if code := sub.wait(t, 10*time.Second, "exit after the token was revoked"); code != 1 {
		t.Fatalf("dmq sub exited with %d, want 1; stderr:\n%s", code, sub.stderr())
	}
	if errOut := sub.stderr(); !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("stderr of dmq sub:\n%s\nwant the Unauthenticated error", errOut)
	}
}
