package fault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/crashpoint"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// armed starts a real broker process that kills itself (SIGKILL) when it
// reaches the crash point.
func armed(t *testing.T, dir, point string, flags ...string) *dmqtest.Process {
	t.Helper()
	return dmqtest.StartProcessEnv(t, dir, []string{crashpoint.EnvVar + "=" + point}, flags...)
}

// waitKilled waits for the process to die at its crash point.
func waitKilled(t *testing.T, p *dmqtest.Process, point string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the broker did not reach crash point %s within 30s:\n%s", point, p.Logs())
	}
	if !strings.Contains(p.Logs(), "crash point "+point+" reached") {
		t.Fatalf("the broker ended without reaching crash point %s:\n%s", point, p.Logs())
	}
}

// publishUntilError publishes numbered ~1 KiB messages, pipelined, until
// the broker fails or limit is reached, and returns the acked bodies.
func publishUntilError(t *testing.T, c *client.Client, from, limit int) []string {
	t.Helper()
	p := c.NewProducer(topicName, client.MaxInFlight(256))
	var mu sync.Mutex
	var acked []string
	for i := from; i < from+limit; i++ {
		b := body(i)
		if err := p.PublishAsync(context.Background(), &client.Message{Body: []byte(b)}, func(_ client.PublishResult, err error) {
			if err == nil {
				mu.Lock()
				acked = append(acked, b)
				mu.Unlock()
			}
		}); err != nil {
			break
		}
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	return acked
}

// consumeAll reads the whole topic with a new group from the earliest
// message and returns the bodies, waiting until want are there.
func consumeAll(t *testing.T, c *client.Client, group string, want int) map[string]int {
	t.Helper()
	if _, err := c.CreateGroup(context.Background(), client.GroupSpec{Topic: topicName, Name: group, FromEarliest: true}); err != nil {
		t.Fatal(err)
	}
	return received(t, c, group, want, 0)
}

// received consumes with group, acking everything, until want distinct
// bodies arrived and then settle longer (room for unwanted deliveries to
// show), and returns how often each body was delivered.
func received(t *testing.T, c *client.Client, group string, want int, settle time.Duration) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	k, err := c.Subscribe(context.Background(), topicName, group, func(_ context.Context, m *client.Message) error {
		mu.Lock()
		got[string(m.Body)]++
		mu.Unlock()
		return nil
	}, client.Prefetch(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dmqtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d messages consumed by %s", want, group), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want
	})
	time.Sleep(settle)
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]int, len(got))
	for b, n := range got {
		out[b] = n
	}
	return out
}

func wantAll(t *testing.T, got map[string]int, acked []string) {
	t.Helper()
	for _, b := range acked {
		if got[b] == 0 {
			t.Fatalf("acked message %.20q is lost (%d acked, %d read back)", b, len(acked), len(got))
		}
	}
}

// A crash between any two steps of a segment roll loses nothing acked, and
// the log rolls normally after the restart.
func TestCrashDuringSegmentRoll(t *testing.T) {
	for _, point := range []string{crashpoint.RollSealed, crashpoint.RollIndexed, crashpoint.RollCreated} {
		t.Run(strings.ReplaceAll(point, "/", "-"), func(t *testing.T) {
			dir := t.TempDir()
			flags := []string{"--segment-bytes", "1048576", "--no-trace"}
			p := armed(t, dir, point, flags...)
			c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
			if _, err := c.CreateTopic(context.Background(), client.TopicSpec{Name: topicName}); err != nil {
				t.Fatal(err)
			}
			acked := publishUntilError(t, c, 0, 5000)
			waitKilled(t, p, point)
			if len(acked) == 0 {
				t.Fatal("nothing was acked before the crash")
			}

			p = dmqtest.StartProcess(t, dir, flags...)
			c = dmqtest.Dial(t, p.Addr)
			more := publishUntilError(t, c, 10000, 3000) // rolls again
			if len(more) != 3000 {
				t.Fatalf("after the restart %d of 3000 publishes acked", len(more))
			}
			tp, err := c.GetTopic(context.Background(), topicName)
			if err != nil || tp.Stats.Segments < 4 {
				t.Fatalf("topic after the restart: %v, %v; want at least 4 segments", tp, err)
			}
			// Everything stored, not just as many as were acked: publishes the crash
			// cut short may be stored too (a cluster's Raft log had them committed),
			// and a read that stops at the acked count can miss acked ones.
			got := consumeAll(t, c, "audit", int(tp.Stats.NextOffset-tp.Stats.FirstOffset))
			wantAll(t, got, append(acked, more...))
		})
	}
}

// A crash while retention removes old segments leaves a log that starts
// at a segment boundary, reads back whole from there, and goes on
// shrinking after the restart; the consuming group keeps its position.
func TestCrashDuringRetention(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"--segment-bytes", "1048576", "--no-trace", "--retention-bytes", "1", "--retention-interval", "200ms"}
	p := armed(t, dir, crashpoint.RetentionRemoved, flags...)
	c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: groupName}); err != nil {
		t.Fatal(err)
	}
	acked := publishUntilError(t, c, 0, 4000)
	if len(acked) != 4000 {
		t.Fatalf("%d of 4000 acked", len(acked))
	}
	k, err := c.Subscribe(ctx, topicName, groupName, func(context.Context, *client.Message) error { return nil }, client.Prefetch(1000))
	if err != nil {
		t.Fatal(err)
	}
	waitKilled(t, p, crashpoint.RetentionRemoved) // once the group acked the first segment
	k.Close()

	p = dmqtest.StartProcess(t, dir, flags...)
	c = dmqtest.Dial(t, p.Addr)
	tp, err := c.GetTopic(ctx, topicName)
	if err != nil {
		t.Fatal(err)
	}
	first, next := tp.Stats.FirstOffset, tp.Stats.NextOffset
	if first == 0 || next != 4000 {
		t.Fatalf("after the restart the log holds [%d, %d); want the first segment gone and 4000 messages published", first, next)
	}
	got := consumeAll(t, c, "audit", int(next-first))
	for i := first; i < next; i++ {
		if got[body(int(i))] == 0 {
			t.Fatalf("message %d of the remaining [%d, %d) is missing", i, first, next)
		}
	}
	// The group still consumes what it had not acked, and retention goes on.
	k, err = c.Subscribe(ctx, topicName, groupName, func(context.Context, *client.Message) error { return nil }, client.Prefetch(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dmqtest.Eventually(t, 30*time.Second, "the group to ack everything and retention to keep only the active segment", func() bool {
		g, err := c.GetGroup(ctx, topicName, groupName)
		tp, err2 := c.GetTopic(ctx, topicName)
		return err == nil && err2 == nil && g.Stats.AckFloor == 4000 && tp.Stats.Segments == 1
	})
}

// A crash right after a group reset was stored: after the restart the
// reset holds (the group replays from the start), and nothing is lost.
func TestCrashDuringGroupReset(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"--no-trace"}
	p := armed(t, dir, crashpoint.ResetStored, flags...)
	c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: groupName}); err != nil {
		t.Fatal(err)
	}
	acked := publishUntilError(t, c, 0, 100)
	k, err := c.Subscribe(ctx, topicName, groupName, func(context.Context, *client.Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "the group to ack all 100", func() bool {
		g, err := c.GetGroup(ctx, topicName, groupName)
		return err == nil && g.Stats.AckFloor == 100
	})
	k.Close()
	if _, err := c.ResetGroup(ctx, topicName, groupName, client.ResetTo{Earliest: true}); err == nil {
		t.Fatal("the reset answered although the broker died storing it")
	}
	waitKilled(t, p, crashpoint.ResetStored)

	p = dmqtest.StartProcess(t, dir, flags...)
	c = dmqtest.Dial(t, p.Addr)
	g, err := c.GetGroup(ctx, topicName, groupName)
	if err != nil || g.Stats.AckFloor != 0 {
		t.Fatalf("group after the restart: %v, %v; want the stored reset (position 0)", g, err)
	}
	got := received(t, c, groupName, 100, 0)
	if len(got) != 100 {
		t.Fatalf("the replay delivered %d distinct messages, want 100", len(got))
	}
	wantAll(t, got, acked)
}

// A crash right after redriven dead letters were stored: after the restart
// they are delivered again, once each, and nothing else comes back.
func TestCrashDuringRedrive(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"--no-trace"}
	p := armed(t, dir, crashpoint.RedriveStored, flags...)
	c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: groupName, MaxAttempts: 1, RetryBackoff: []time.Duration{time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	publishUntilError(t, c, 0, 50)
	failing := map[string]bool{}
	for i := 0; i < 50; i += 5 {
		failing[body(i)] = true // 10 of 50 fail and become dead letters
	}
	k, err := c.Subscribe(ctx, topicName, groupName, func(_ context.Context, m *client.Message) error {
		if failing[string(m.Body)] {
			return errors.New("rejected")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "10 dead letters and the rest acked", func() bool {
		g, err := c.GetGroup(ctx, topicName, groupName)
		return err == nil && g.Stats.DeadLetters == 10 && g.Stats.InFlight == 0 && g.Stats.Backlog == 0
	})
	k.Close()
	if _, err := c.RedriveDeadLetters(ctx, topicName, groupName, client.DeadLetters{All: true}); err == nil {
		t.Fatal("the redrive answered although the broker died storing it")
	} else {
		t.Logf("the redrive failed: %v", err)
	}
	waitKilled(t, p, crashpoint.RedriveStored)

	p = dmqtest.StartProcess(t, dir, flags...)
	c = dmqtest.Dial(t, p.Addr)
	got := received(t, c, groupName, 10, 300*time.Millisecond)
	for b, n := range got {
		if !failing[b] || n != 1 {
			t.Fatalf("after the restart %.20q was delivered %d times; want each of the 10 redriven dead letters once and nothing else (%d delivered)", b, n, len(got))
		}
	}
	if len(got) != 10 {
		t.Fatalf("%d redriven dead letters delivered, want 10", len(got))
	}
}
