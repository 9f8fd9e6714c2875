// Package fault_test injects the faults a broker meets in production
// (power loss, torn and corrupt files, I/O errors, crashes) and checks
// that nothing acknowledged is lost and nothing corrupt is served.
package fault_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/server"
)

// cutPower cuts the power of the broker's disk, which holds its logs and its
// metadata store, at this instant, and returns what a reboot finds on it.
// The running broker is not told (Pebble panics on a failed write or sync),
// and the ledger stops taking acks: a dead machine sends none.
func cutPower(disk *faultfs.FS, l *ledger, rng *rand.Rand) *faultfs.FS {
	l.mu.Lock()
	disk.CutPowerUnnoticed()
	l.cut = true
	l.mu.Unlock()
	return disk.Crash(rng)
}

// startOn starts a server on the disks. It fails the test if the broker
// cannot recover from what the last power cut left.
func startOn(t *testing.T, disk *faultfs.FS) *server.Server {
	t.Helper()
	cfg := dmqtest.Config("/data")
	// A node's replicas write through the operating system's files, which cannot lose
	// their page cache on demand: power cuts are simulated on a standalone broker, and
	// on a node by kill -9 (test/e2e, test/cluster) and crash points (crashpoints_test).
	cfg.Standalone = true
	cfg.FS = disk
	cfg.SegmentBytes = 1 << 20 // roll often
	cfg.NoTrace = true         // trace records are not what this test checks
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("the broker does not start after a power cut: %v", err)
	}
	return s
}

// ledger is what clients were told before the power cut: messages acked to
// producers and deliveries their consumer acked.
type ledger struct {
	mu        sync.Mutex
	attempted map[string]bool // bodies sent
	acked     map[string]bool // bodies acked to their producer
	handled   map[string]bool // message ids the consumer acked
	cut       bool            // the power is cut: what the broker says now never reached anyone
}

func newLedger() *ledger {
	return &ledger{attempted: map[string]bool{}, acked: map[string]bool{}, handled: map[string]bool{}}
}

const (
	topicName = "test.fault.orders"
	groupName = "billing"
)

// Power is cut at random points while producers publish and a consumer
// acks; after each cut the broker restarts on what the disks kept. Every
// message acked to a producer is there and reads back intact, nothing else
// is served, and the group's position never passed a message its consumer
// had not acked. The rounds of an epoch run on the same disks, so
// recoveries stack; a new epoch starts from empty disks.
//
// DMQ_FAULT_SEED replays a run; DMQ_FAULT_ROUNDS changes the number of
// power cuts (default 200).
func TestPowerLossKeepsEveryAckedMessage(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DMQ_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DMQ_FAULT_SEED=%q: %v", s, err)
		}
	}
	rounds := 200
	if s := os.Getenv("DMQ_FAULT_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d; replay with DMQ_FAULT_SEED=%d go test -run TestPowerLoss ./test/fault/", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x646d71))

	const epoch = 25
	var d *faultfs.FS
	var l *ledger
	var acked, handled, segments int
	defer func() {
		t.Logf("%d power cuts: %d messages acked to producers, %d deliveries acked, up to %d segments per epoch", rounds, acked, handled, segments)
	}()
	for round := 0; round < rounds; round++ {
		if round%epoch == 0 {
			if l != nil {
				acked, handled = acked+len(l.acked), handled+len(l.handled)
			}
			d, l = faultfs.New(), newLedger()
		}
		s := startOn(t, d)
		l.mu.Lock()
		l.cut = false
		l.mu.Unlock()
		if ti, err := s.Broker().GetTopic(topicName); err == nil {
			segments = max(segments, ti.Segments)
		}
		if round%epoch == 0 {
			setup(t, s)
		} else if err := verify(s.Broker(), l); err != nil {
			s.Shutdown(context.Background())
			t.Fatalf("seed %d, round %d (after %d power cuts on these disks): %v", seed, round, round%epoch, err)
		}
		d = load(t, s, d, l, round, rng)
	}
	// The last cut, checked too.
	s := startOn(t, d)
	defer s.Shutdown(context.Background())
	if err := verify(s.Broker(), l); err != nil {
		t.Fatalf("seed %d, after the last round: %v", seed, err)
	}
	acked, handled = acked+len(l.acked), handled+len(l.handled)
	if ti, err := s.Broker().GetTopic(topicName); err == nil {
		segments = max(segments, ti.Segments)
	}
}

func setup(t *testing.T, s *server.Server) {
	t.Helper()
	c, err := client.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: groupName}); err != nil {
		t.Fatal(err)
	}
}

// load publishes with three pipelined producers and consumes with one
// consumer, cuts the power after a random time, stops the broker and
// returns what the disks kept.
func load(t *testing.T, s *server.Server, d *faultfs.FS, l *ledger, round int, rng *rand.Rand) *faultfs.FS {
	t.Helper()
	ctx := context.Background()
	c, err := client.Dial(s.GRPCAddr(), client.WithRetry(client.RetryPolicy{Attempts: 1}), client.WithClientID("fault-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k, err := c.Subscribe(ctx, topicName, groupName, func(_ context.Context, m *client.Message) error {
		l.mu.Lock()
		if !l.cut {
			l.handled[m.ID] = true
		}
		l.mu.Unlock()
		return nil
	}, client.Concurrency(4))
	if err != nil {
		t.Fatalf("round %d: subscribe: %v", round, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		pr := c.NewProducer(topicName, client.MaxInFlight(64))
		padding := rng.IntN(4096)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pr.Close()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("r%d-p%d-%d-%0*d", round, p, i, padding%(i+1), 0)
				l.mu.Lock()
				l.attempted[body] = true
				l.mu.Unlock()
				err := pr.PublishAsync(ctx, &client.Message{Body: []byte(body)}, func(_ client.PublishResult, err error) {
					if err == nil {
						l.mu.Lock()
						if !l.cut {
							l.acked[body] = true
						}
						l.mu.Unlock()
					}
				})
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
	after := cutPower(d, l, rng)
	close(stop)
	k.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s.Shutdown(sctx) // on a disk that keeps nothing more
	wg.Wait()
	return after
}

// verify reads every stored message of the topic and checks the ledger.
func verify(b *broker.Broker, l *ledger) error {
	ti, err := b.GetTopic(topicName)
	if err != nil {
		return fmt.Errorf("topic after the power cut: %v", err)
	}
	seen := map[string]uint64{}
	for off := ti.FirstOffset; off < ti.NextOffset; off++ {
		m, err := b.Read(topicName, off)
		if err != nil {
			return fmt.Errorf("message %d of [%d, %d) does not read back: %v", off, ti.FirstOffset, ti.NextOffset, err)
		}
		body := string(m.Body)
		if !l.attempted[body] {
			return fmt.Errorf("message %d has a body no producer sent: %.40q", off, body)
		}
		if prev, dup := seen[body]; dup {
			return fmt.Errorf("message %.40q stored twice, at %d and %d", body, prev, off)
		}
		seen[body] = off
	}
	for body := range l.acked {
		if _, ok := seen[body]; !ok {
			return fmt.Errorf("message %.40q was acked to its producer and is lost (%d stored, %d acked)", body, len(seen), len(l.acked))
		}
	}
	g, err := b.GetGroup(topicName, groupName)
	if err != nil {
		return fmt.Errorf("group after the power cut: %v", err)
	}
	if g.AckFloor > ti.NextOffset {
		return fmt.Errorf("group position %d is past the end of the log %d", g.AckFloor, ti.NextOffset)
	}
	for off := g.StartOffset; off < g.AckFloor; off++ {
		if !l.handled[broker.FormatOffset(off)] {
			return fmt.Errorf("group position %d passed message %d, which its consumer never acked", g.AckFloor, off)
		}
	}
	return nil
}
