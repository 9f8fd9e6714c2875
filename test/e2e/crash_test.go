package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// readAll consumes every message of a fresh group starting at the earliest
// offset and returns bodies by id.
func readAll(t *testing.T, c *client.Client, topic, group string, want int) map[string]string {
	t.Helper()
	if _, err := c.CreateGroup(context.Background(), client.GroupSpec{Topic: topic, Name: group, FromEarliest: true}); err != nil {
		t.Fatalf("CreateGroup(%s): %v", group, err)
	}
	var mu sync.Mutex
	got := map[string]string{}
	k, err := c.Subscribe(context.Background(), topic, group, func(_ context.Context, m *client.Message) error {
		mu.Lock()
		got[m.ID] = string(m.Body)
		mu.Unlock()
		return nil
	}, client.Prefetch(2000))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dmqtest.Eventually(t, 60*time.Second, fmt.Sprintf("reading %d messages", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want
	})
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]string, len(got))
	for id, b := range got {
		out[id] = b
	}
	return out
}

// No acknowledged message is lost when the broker process is killed with
// SIGKILL at a random moment, over several kill/restart rounds, while
// several pipelined producers publish.
func TestAckedMessagesSurviveKill9(t *testing.T) {
	const topic = "test.crash.orders"
	const rounds, producers = 5, 4
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	var mu sync.Mutex
	acked := map[string]string{} // id → body of every publish the broker acked
	for round := 0; round < rounds; round++ {
		p := dmqtest.StartProcess(t, dir, "--segment-bytes", "1048576")
		// No retransmission: this test stops publishing when the broker dies.
		c, err := client.Dial(p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			setupTopic(t, c, topic)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for i := 0; i < producers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				prod := c.NewProducer(topic, client.MaxInFlight(500))
				defer prod.Close()
				for seq := 0; seq < 50_000 && !stop.Load(); seq++ {
					body := fmt.Sprintf("r%d-p%d-%d-%s", round, i, seq, strings.Repeat("x", 200))
					err := prod.PublishAsync(context.Background(), &client.Message{Key: fmt.Sprint(seq), Body: []byte(body)}, func(r client.PublishResult, err error) {
						if err != nil {
							stop.Store(true) // the broker is gone
							return
						}
						mu.Lock()
						acked[r.ID] = body
						mu.Unlock()
					})
					if err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
		p.Kill()
		wg.Wait()
		c.Close()
		mu.Lock()
		t.Logf("round %d: killed; %d messages acked so far", round, len(acked))
		mu.Unlock()
	}
	if len(acked) == 0 {
		t.Fatal("no publish was acked: the test proved nothing")
	}

	p := dmqtest.StartProcess(t, dir)
	c := dmqtest.Dial(t, p.Addr)
	tp, err := c.GetTopic(context.Background(), topic)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	stored := int(tp.Stats.NextOffset - tp.Stats.FirstOffset)
	if stored < len(acked) {
		t.Fatalf("topic stores %d messages, fewer than the %d acked", stored, len(acked))
	}
	got := readAll(t, c, topic, "verify", stored)
	var missing []string
	for id, body := range acked {
		if got[id] != body {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d acked messages lost or changed after kill -9, e.g. ids %v", len(missing), missing[:min(10, len(missing))])
	}
	p.Stop(t)
}

// A torn and corrupted tail of the newest segment is cut off at start-up:
// the broker starts, keeps every intact record and reports what it dropped.
func TestTornCorruptTailIsTruncatedAndReported(t *testing.T) {
	const topic = "test.crash.tail"
	dir := t.TempDir()
	p := dmqtest.StartProcess(t, dir)
	c, err := client.Dial(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	setupTopic(t, c, topic)
	const n = 100
	ids := publishN(t, c, topic, n)
	c.Close()
	p.Stop(t)

	// Tear the last record in half and append garbage after it.
	segs, _ := filepath.Glob(filepath.Join(dir, "topics", topic, "*.log"))
	if len(segs) == 0 {
		t.Fatal("no segment file found")
	}
	sort.Strings(segs)
	newest := segs[len(segs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(newest, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 300)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	f.Write(garbage)
	f.Close()

	p = dmqtest.StartProcess(t, dir)
	// The report goes to stderr, read apart from the "listening" line on stdout.
	dmqtest.Eventually(t, 10*time.Second, "the broker to report the dropped tail", func() bool {
		logs := p.Logs()
		return strings.Contains(logs, "recovered topic log") && strings.Contains(logs, "dropped_bytes")
	})
	c = dmqtest.Dial(t, p.Addr)
	tp, err := c.GetTopic(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	// A cluster node's Raft log holds the torn record too, and restores it.
	kept := n - 1
	if dmqtest.OneVoter() {
		kept = n
	}
	if tp.Stats.NextOffset != uint64(kept) {
		t.Fatalf("after recovery next offset = %d, want %d", tp.Stats.NextOffset, kept)
	}
	got := readAll(t, c, topic, "verify", kept)
	for i, id := range ids[:kept] {
		if got[id] != fmt.Sprint("m", i) {
			t.Errorf("message %s = %q after recovery, want %q", id, got[id], fmt.Sprint("m", i))
		}
	}
	// New publishes continue after the intact records.
	rs, err := c.Publish(context.Background(), topic, &client.Message{Body: []byte("after")})
	if err != nil || rs[0].ID != fmt.Sprint(kept) {
		t.Errorf("publish after recovery = %v, %v; want id %d", rs, err, kept)
	}
	p.Stop(t)
}
