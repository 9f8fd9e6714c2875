package inbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/client/inbox"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// The helper consumer process reads its settings from these variables.
const (
	helperEnv      = "DMQ_INBOX_HELPER" // "1" in the helper process
	helperAddrEnv  = "DMQ_INBOX_HELPER_ADDR"
	helperTopicEnv = "DMQ_INBOX_HELPER_TOPIC"
	helperGroupEnv = "DMQ_INBOX_HELPER_GROUP"
	helperPathEnv  = "DMQ_INBOX_HELPER_PATH"
	// handlingPrefix starts the line the helper prints when its business
	// handler starts on a message.
	handlingPrefix = "inbox-helper: handling "
)

// TestHelperInboxConsumer is not a test of its own: it is the consumer
// process of TestConsumerKilledMidHandlerFinishesFromInbox, which runs the
// test binary again with DMQ_INBOX_HELPER=1. It subscribes through an inbox
// whose business handler never finishes, and waits to be killed. In a
// normal test run it returns at once.
func TestHelperInboxConsumer(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	ib, err := inbox.Open(os.Getenv(helperPathEnv), func(_ context.Context, m *client.Message) error {
		fmt.Printf("%s%s\n", handlingPrefix, m.ID)
		time.Sleep(time.Hour) // the process is killed in the meantime
		return nil
	})
	if err != nil {
		t.Fatalf("inbox.Open: %v", err)
	}
	c, err := client.Dial(os.Getenv(helperAddrEnv))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Subscribe(context.Background(), os.Getenv(helperTopicEnv), os.Getenv(helperGroupEnv), ib.Handler()); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	time.Sleep(time.Hour)
}

// helper is the consumer process started by startHelper.
type helper struct {
	cmd      *exec.Cmd
	handling chan string // ids the business handler started on
	exited   chan struct{}
	mu       sync.Mutex
	output   strings.Builder
}

func (h *helper) logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.output.String()
}

// startHelper runs TestHelperInboxConsumer in a child process and kills it
// at the end of the test if it still runs.
func startHelper(t *testing.T, addr, topic, group, path string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperInboxConsumer$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperAddrEnv+"="+addr,
		helperTopicEnv+"="+topic, helperGroupEnv+"="+group, helperPathEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	h := &helper{cmd: cmd, handling: make(chan string, 100), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper consumer: %v", err)
	}
	go func() {
		defer close(h.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			h.output.WriteString(line + "\n")
			h.mu.Unlock()
			if id, ok := strings.CutPrefix(line, handlingPrefix); ok {
				h.handling <- id
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-h.exited
	})
	return h
}

// The crash test: the consumer stores and acks every message, is killed
// with SIGKILL while its business handler runs, restarts, and finishes the
// work from its inbox; the broker, which got every ack, redelivers nothing.
func TestConsumerKilledMidHandlerFinishesFromInbox(t *testing.T) {
	const topic, group, n = "test.inbox.orders", "billing", 20
	ctx := context.Background()
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	// A short ack timeout: had an ack not reached the broker, the message
	// would come back quickly and fail the test.
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group, AckTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for i := 0; i < n; i++ {
		rs, err := c.Publish(ctx, topic, &client.Message{Key: fmt.Sprint("order-", i), Body: []byte(fmt.Sprint("pay ", i))})
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		published[rs[0].ID] = true
	}
	groupStats := func() (floor, inFlight, backlog uint64) {
		g, err := c.GetGroup(ctx, topic, group)
		if err != nil {
			t.Fatalf("GetGroup: %v", err)
		}
		return g.Stats.AckFloor, g.Stats.InFlight, g.Stats.Backlog
	}

	// First life: a separate process, killed mid-handler once the broker
	// has every ack.
	path := filepath.Join(t.TempDir(), "billing.inbox")
	h := startHelper(t, s.GRPCAddr(), topic, group, path)
	var busy string
	select {
	case busy = <-h.handling:
	case <-h.exited:
		t.Fatalf("helper consumer exited before handling a message:\n%s", h.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("helper consumer handled nothing within 30s:\n%s", h.logs())
	}
	dmqtest.Eventually(t, 20*time.Second, fmt.Sprintf("the broker to get acks for all %d messages", n), func() bool {
		floor, inFlight, _ := groupStats()
		return floor == n && inFlight == 0
	})
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper consumer: %v", err)
	}
	<-h.exited
	select {
	case id := <-h.handling:
		t.Fatalf("helper consumer started a second message (%s) although its handler never returned", id)
	default:
	}

	// Second life, in this process: everything is still in the inbox.
	var mu sync.Mutex
	handled := map[string][]int{} // id → attempt numbers seen
	release := make(chan struct{})
	ib, err := inbox.Open(path, func(_ context.Context, m *client.Message) error {
		<-release
		mu.Lock()
		defer mu.Unlock()
		handled[m.ID] = append(handled[m.ID], m.Attempt)
		return nil
	})
	if err != nil {
		t.Fatalf("reopen inbox: %v", err)
	}
	defer ib.Close()
	if st, err := ib.Stats(); err != nil || st.Pending != n {
		t.Fatalf("inbox after the kill: %+v, %v; want all %d messages pending", st, err, n)
	}
	var deliveries sync.Map // broker deliveries to the restarted consumer
	store := ib.Handler()
	k, err := c.Subscribe(ctx, topic, group, func(ctx context.Context, m *client.Message) error {
		deliveries.Store(m.ID, m.Attempt)
		return store(ctx, m)
	})
	if err != nil {
		t.Fatalf("Subscribe after restart: %v", err)
	}
	defer k.Close()
	close(release)
	dmqtest.Eventually(t, 20*time.Second, "the inbox to finish every message", func() bool {
		st, err := ib.Stats()
		return err == nil && st.Pending == 0 && st.Running == 0
	})
	g, err := c.GetGroup(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	if g.Stats.AckFloor != n || g.Stats.InFlight != 0 || g.Stats.Backlog != 0 || g.Stats.MembersOnline != 1 {
		t.Fatalf("group after restart: %+v; want ack floor %d, nothing in flight nor in backlog, 1 member online", g.Stats, n)
	}
	deliveries.Range(func(id, attempt any) bool {
		t.Errorf("broker delivered message %v (attempt %v) again to the restarted consumer", id, attempt)
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != n {
		t.Fatalf("restarted consumer handled %d distinct messages from its inbox, want %d", len(handled), n)
	}
	for id, attempts := range handled {
		if !published[id] || len(attempts) != 1 || attempts[0] != 1 {
			t.Errorf("message %s: handled with attempts %v; want a published message handled once, attempt 1", id, attempts)
		}
	}
	if len(handled[busy]) != 1 {
		t.Errorf("message %s, killed mid-handler, was handled %d times after the restart, want 1", busy, len(handled[busy]))
	}
}
