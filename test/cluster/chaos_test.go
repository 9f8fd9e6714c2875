package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// TestChaos is the total-queue checker on real processes: `dmq server` nodes with a
// topic on each shard, a cluster group and a broadcast group on each, producers
// publishing pipelined through the SDK, and a random schedule of faults: SIGKILL and a
// restart after a while, SIGSTOP and SIGCONT after a while, a graceful restart. Never
// more nodes are faulted at once than leave a quorum. Then everything is healed, the
// producers stop, the consumers drain, and it checks: every acknowledged publish was
// delivered to both groups, each topic stores every acknowledged message once (what a
// refused publish answered "not stored" may not be there), duplicates are counted, every
// node started again, and every replica holds the same log.
//
// It runs briefly by default (CI). A longer run, with a replayable schedule:
//
//	DMQ_CHAOS_DURATION=5m DMQ_CHAOS_NODES=3 [DMQ_CHAOS_SEED=n] go test -count=1 -timeout 30m -run TestChaos -v ./test/cluster/
func TestChaos(t *testing.T) {
	duration := 25 * time.Second
	if s := os.Getenv("DMQ_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DMQ_CHAOS_DURATION: %v", err)
		}
		duration = d
	}
	nodes := 3
	if s := os.Getenv("DMQ_CHAOS_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 3 {
			t.Fatalf("DMQ_CHAOS_NODES: %q, want 3 or more", s)
		}
		nodes = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DMQ_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DMQ_CHAOS_SEED: %v", err)
		}
	}
	t.Logf("chaos: %d nodes for %v, seed %d (DMQ_CHAOS_SEED=%d replays the schedule)", nodes, duration, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	const shards = 3
	c := startCluster(t, nodes, "--shards", strconv.Itoa(shards))
	c.waitCaughtUp()
	cl := c.dial()
	topics := topicPerShard("dev.chaos.t", shards)
	type groupLedgers struct{ cluster, broadcast *ledger }
	ledgers := make([]groupLedgers, shards)
	ctx := context.Background()
	for k, topic := range topics {
		createTopic(t, cl, topic, "billing")
		if _, err := cl.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: "audit", Mode: dmqv1.GroupMode_GROUP_MODE_BROADCAST, FromEarliest: true}); err != nil {
			t.Fatal(err)
		}
		ledgers[k] = groupLedgers{newLedger(), newLedger()}
		consume(t, cl, topic, "billing", ledgers[k].cluster)
		bc, err := cl.Subscribe(ctx, topic, "audit", func(_ context.Context, m *client.Message) error {
			ledgers[k].broadcast.deliver(string(m.Body))
			return nil
		}, client.Prefetch(200), client.ConsumerClientID("auditor"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bc.Close() })
	}

	// Producers: one per topic, pipelined, until the schedule ends. A publish refused
	// for good is recorded as such (the ledger's failed list) and not counted as acked.
	var stop atomic.Bool
	var published, refused atomic.Int64
	var producers sync.WaitGroup
	for k, topic := range topics {
		producers.Add(1)
		go func() {
			defer producers.Done()
			prod := cl.NewProducer(topic, client.MaxInFlight(200), client.BatchSize(20))
			defer prod.Close()
			var wg sync.WaitGroup
			defer wg.Wait()
			for i := 0; !stop.Load() && i < 2_000_000; i++ {
				body := fmt.Sprintf("c%d-%d", k, i)
				wg.Add(1)
				published.Add(1)
				err := prod.PublishAsync(ctx, &client.Message{Body: []byte(body)}, func(r client.PublishResult, err error) {
					defer wg.Done()
					if err != nil {
						refused.Add(1)
						ledgers[k].cluster.fail(body, err)
						return
					}
					ledgers[k].cluster.ack(body, r.ID)
					ledgers[k].broadcast.ack(body, r.ID)
				})
				if err != nil {
					wg.Done()
					published.Add(-1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if i%20 == 0 {
					time.Sleep(time.Millisecond) // a few thousand messages a second in all
				}
			}
		}()
	}

	// The schedule: one fault at a time per node, at most (nodes-1)/2 nodes faulted.
	type fault struct {
		nd    *node
		kind  string
		until time.Time
	}
	var faulted []fault
	heal := func(f fault) {
		switch f.kind {
		case "stop":
			f.nd.p.Cmd.Process.Signal(syscall.SIGCONT)
		case "kill":
			c.start(f.nd)
		}
		t.Logf("heal %s (%s)", f.nd.id, f.kind)
	}
	counts := map[string]int{}
	end := time.Now().Add(duration)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		now := time.Now()
		faulted = slices.DeleteFunc(faulted, func(f fault) bool {
			if now.After(f.until) {
				heal(f)
				return true
			}
			return false
		})
		if len(faulted) >= (nodes-1)/2 {
			continue
		}
		var free []*node
		for _, nd := range c.nodes {
			if !slices.ContainsFunc(faulted, func(f fault) bool { return f.nd == nd }) {
				free = append(free, nd)
			}
		}
		nd := free[rng.IntN(len(free))]
		if rng.IntN(2) == 0 { // half the time, the leader of some shard
			if st, err := status(nd); err == nil {
				for _, g := range st.Groups {
					if i := slices.IndexFunc(free, func(n *node) bool { return n.id == g.Leader.ID }); i >= 0 {
						nd = free[i]
						break
					}
				}
			}
		}
		hold := time.Duration(1000+rng.IntN(9000)) * time.Millisecond
		switch k := rng.IntN(5); {
		case k <= 1:
			nd.p.Kill()
			faulted = append(faulted, fault{nd, "kill", now.Add(hold)})
			t.Logf("SIGKILL %s for %v", nd.id, hold)
			counts["kill"]++
		case k <= 3:
			nd.p.Cmd.Process.Signal(syscall.SIGSTOP)
			faulted = append(faulted, fault{nd, "stop", now.Add(hold)})
			t.Logf("SIGSTOP %s for %v", nd.id, hold)
			counts["stop"]++
		default:
			c.stop(nd)
			c.start(nd)
			t.Logf("restart %s", nd.id)
			counts["restart"]++
		}
	}
	for _, f := range faulted {
		heal(f)
	}
	stop.Store(true)
	producers.Wait()
	t.Logf("faults: %v; %d published, %d refused", counts, published.Load(), refused.Load())

	// Drain and check.
	c.waitSettled(120 * time.Second)
	var stored uint64
	counted := make([]uint64, len(topics))
	for k, topic := range topics {
		for name, lg := range map[string]*ledger{"billing": ledgers[k].cluster, "audit": ledgers[k].broadcast} {
			dmqtest.Eventually(t, 90*time.Second, fmt.Sprintf("every acknowledged message of %s delivered to %s", topic, name), func() bool {
				_, _, missing := lg.counts()
				return missing == 0
			})
		}
		lg := ledgers[k].cluster
		acked, delivered, _ := lg.counts()
		lg.mu.Lock()
		repeats, unknown := 0, len(lg.failed)
		for body := range lg.acked {
			repeats += lg.delivered[body] - 1
		}
		lg.mu.Unlock()
		n := storedCount(t, cl, topic)
		t.Logf("%s: %d acked, %d failed, %d delivered to billing (%d repeats), %d stored", topic, acked, unknown, delivered, repeats, n)
		if n < uint64(acked) {
			t.Fatalf("%s stores %d messages for %d acknowledged", topic, n, acked)
		}
		// Stored but not acknowledged: publishes whose answer was lost or "outcome
		// unknown"; there cannot be more of them than publishes that failed.
		if extra := int(n) - acked; extra > unknown {
			t.Fatalf("%s stores %d more messages than were acknowledged, but only %d publishes failed", topic, extra, unknown)
		}
		counted[k] = n
		stored += n
	}
	t.Logf("%d messages stored in all; every node started again after every fault", stored)
	c.waitSettled(60 * time.Second)
	c.stopAll()
	for k, topic := range topics {
		c.checkReplicasEqual(topic, counted[k])
	}
}

// waitSettled waits until every shard has a leader that serves and every node applied
// what it committed; if that does not come within timeout, it prints each node's view,
// its last notable log lines and the goroutines of the suspects (SIGQUIT makes a Go
// process print them and exit), and fails.
func (c *testCluster) waitSettled(timeout time.Duration, suspects ...*node) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var lines []string
		commits := map[string]uint64{}
		settled := true
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				lines = append(lines, fmt.Sprintf("%s: %v", nd.id, err))
				settled = false
				continue
			}
			for _, g := range st.Groups {
				if g.Role == "leader" {
					commits[g.Name] = g.CommitIndex
				}
				lines = append(lines, fmt.Sprintf("%s %s: %s (raft %s, leader %q) commit %d applied %d last %d %s%s",
					nd.id, g.Name, g.Role, g.State, g.Leader.ID, g.CommitIndex, g.AppliedIndex, g.LastLogIndex, g.Stalled, g.ReplicaError))
			}
		}
		if len(commits) < max(c.shards, 1) {
			settled = false
		}
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				continue
			}
			for _, g := range st.Groups {
				if g.AppliedIndex < commits[g.Name] {
					settled = false
				}
			}
		}
		if settled {
			return
		}
		if time.Now().After(deadline) {
			for _, nd := range c.nodes {
				c.t.Logf("%s's last notable log lines:\n%s", nd.id, dmqtest.Tail(nd.notableLogs(), 20))
			}
			for _, nd := range suspects {
				c.t.Logf("%s's goroutines in the replica, Pebble and Raft:\n%s", nd.id, dmqtest.Tail(stacksOf(nd.p.Dump()), 300))
			}
			c.t.Fatalf("not settled within %v (a serving leader per shard, every node applied):\n%s", timeout, strings.Join(lines, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stacksOf is the goroutines of a Go process's SIGQUIT dump that are in the replica,
// Pebble or Raft's main loop.
func stacksOf(dump string) string {
	var stacks []string
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "dmq/internal/replica") || strings.Contains(g, "pebble") || strings.Contains(g, "raft.(*Raft).run") {
			stacks = append(stacks, g)
		}
	}
	return strings.Join(stacks, "\n\n")
}
