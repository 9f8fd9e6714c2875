package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/server"
)

// publishAll publishes total messages "<prefix>-<i>" through a pipelined producer,
// calling after(i) once message i is queued; every outcome goes to the ledger.
func publishAll(t *testing.T, cl *client.Client, topic, prefix string, total int, lg *ledger, after func(i int)) {
	t.Helper()
	prod := cl.NewProducer(topic, client.MaxInFlight(200), client.BatchSize(50))
	defer prod.Close()
	var wg sync.WaitGroup
	for i := 0; i < total; i++ {
		if err := lg.publish(prod, fmt.Sprintf("%s-%d", prefix, i), &wg); err != nil {
			t.Fatalf("PublishAsync: %v", err)
		}
		if after != nil {
			after(i)
		}
	}
	wg.Wait()
}

// consume subscribes to topic's group and records every delivery until the test ends.
func consume(t *testing.T, cl *client.Client, topic, group string, lg *ledger) {
	t.Helper()
	k, err := cl.Subscribe(context.Background(), topic, group, func(_ context.Context, m *client.Message) error {
		lg.deliver(string(m.Body))
		return nil
	}, client.Prefetch(200), client.OnError(func(err error) { t.Logf("consumer: %v", err) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
}

// checkQueue is the total-queue check: every acknowledged publish is delivered (repeats
// allowed, as at-least-once allows after a failover), and the topic stores each of the
// total publishes once.
func checkQueue(t *testing.T, cl *client.Client, topic string, lg *ledger, total int) {
	t.Helper()
	dmqtest.Eventually(t, 60*time.Second, "every acknowledged message delivered", func() bool {
		_, _, missing := lg.counts()
		return missing == 0
	})
	redelivered := lg.check(t, total)
	t.Logf("%d deliveries repeated (at-least-once)", redelivered)
	if n := storedCount(t, cl, topic); n != uint64(total) {
		t.Fatalf("topic stores %d messages for %d published: a retransmission was stored twice", n, total)
	}
}

func storedCount(t *testing.T, cl *client.Client, topic string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, err := cl.GetTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return tp.Stats.NextOffset - tp.Stats.FirstOffset
}

func TestKillLeaderUnderPipelinedLoad(t *testing.T) {
	const topic, total = "dev.cluster.orders", 6000
	c := startCluster(t, 3)
	// The SDK's default retry policy, whose backoff grows to 2 s, as users have it.
	cl := c.dial(client.WithRetry(client.DefaultRetry))
	createTopic(t, cl, topic, "billing")
	lg := newLedger()
	consume(t, cl, topic, "billing", lg)

	var killedAt atomic.Int64
	var victim *node
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		// Kill once a third is acknowledged.
		dmqtest.Eventually(t, 60*time.Second, "a third of the publishes acknowledged", func() bool {
			acked, _, _ := lg.counts()
			return acked >= total/3
		})
		victim = c.waitLeader(nil)
		killedAt.Store(time.Now().UnixNano())
		victim.p.Kill()
		t.Logf("killed leader %s with -9", victim.id)
	}()
	publishAll(t, cl, topic, "m", total, lg, nil)
	<-killed
	stalled := lg.ackGap(time.Unix(0, killedAt.Load()), time.Now())
	newLeader := c.waitLeader(victim)
	st, _ := status(newLeader)
	failover := time.Duration(st.Groups[0].LeadingSinceMs*1e6 - killedAt.Load())
	t.Logf("new leader %s serving %v after the kill; publishing stalled %v", newLeader.id, failover.Round(time.Millisecond), stalled.Round(time.Millisecond))
	if failover > 5*time.Second {
		t.Errorf("failover took %v, want under 5s", failover)
	}
	// Issue 20: publishing resumed 1.0-2.4 s after the kill in most runs, but took
	// 15.7 s (median of a run) and 7.8 s under flat-out load in others.
	if stalled > 5*time.Second {
		t.Errorf("publishing stalled %v after the kill, want under 5s", stalled)
	}

	checkQueue(t, cl, topic, lg, total)

	// The killed node comes back, catches up, and holds the same log.
	c.start(victim)
	c.waitCaughtUp()
	c.waitPeersKnown()
	var https []string
	for _, nd := range c.nodes {
		https = append(https, nd.http)
	}
	out := runCLI(t, "cluster", "status", "--http", strings.Join(https, ","))
	if strings.Count(out, " leader ") != 1 || strings.Count(out, " follower ") != 2 || strings.Contains(out, "unreachable") {
		t.Fatalf("dmq cluster status after the restart:\n%s", out)
	}
	c.stopAll()
	c.checkReplicasEqual(topic, uint64(total))
}

func TestRollingRestartUnderLoad(t *testing.T) {
	const topic, total = "dev.cluster.rolling", 6000
	c := startCluster(t, 3)
	cl := c.dial()
	createTopic(t, cl, topic, "audit")
	lg := newLedger()
	consume(t, cl, topic, "audit", lg)

	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for _, nd := range c.nodes {
			time.Sleep(300 * time.Millisecond)
			st, _ := status(nd)
			c.stop(nd)
			// A leader stopped cleanly hands its leadership on first.
			if st.Role == "leader" && !strings.Contains(nd.p.Logs(), "handed the shard on before stopping") {
				t.Errorf("leader %s stopped without handing its leadership on; its notable log lines:\n%s", nd.id, nd.notableLogs())
			}
			c.start(nd)
			c.waitLeader(nil)
			t.Logf("restarted %s (leader before: %v)", nd.id, st.Role == "leader")
		}
	}()
	publishAll(t, cl, topic, "r", total, lg, func(i int) {
		if i%500 == 0 {
			time.Sleep(100 * time.Millisecond) // spread the load over the restarts
		}
	})
	<-restarted
	checkQueue(t, cl, topic, lg, total)
	c.checkReplicas(total, topic)
}

// TestNodeJoinsAfterCompaction adds a fourth node to a cluster whose Raft log was
// compacted: it receives a snapshot or what is left of the log, then the new entries,
// and ends with the same topic log as the others.
func TestNodeJoinsAfterCompaction(t *testing.T) {
	const topic, total = "dev.cluster.join", 6000
	small := []string{"--snapshot-entries", "16", "--snapshot-interval", "100ms", "--trailing-entries", "4", "--segment-bytes", "1048576"}
	c := startCluster(t, 3, small...)
	cl := c.dial()
	createTopic(t, cl, topic, "g")
	lg := newLedger()
	publishAll(t, cl, topic, "j", total, lg, nil)
	lg.checkAcked(t, total)
	leader := c.waitLeader(nil)
	// A snapshot near the end of the log lets the leader drop the sealed segments of
	// the Raft log (compaction removes whole 1 MiB segments; 6 MB were written).
	dmqtest.Eventually(t, 30*time.Second, "the leader's log compacted", func() bool {
		st, err := status(leader)
		if err != nil {
			return false
		}
		if st.Groups[0].FirstLogIndex > 1 {
			return true
		}
		// Keep writing (positions of a consumer) so that snapshots go on.
		cl.Publish(context.Background(), topic, &client.Message{Body: []byte("more")})
		return false
	})

	n4 := &node{id: "n4", grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: t.TempDir()}
	args := append([]string{"--node-id", n4.id, "--join", "--cluster-listen", n4.raft, "--listen", n4.grpc, "--http", n4.http}, small...)
	n4.p = dmqtest.StartProcess(t, n4.dir, args...)
	out := runCLI(t, "cluster", "add-node", "n4", n4.raft, "--http", c.nodes[0].http+","+c.nodes[1].http)
	t.Logf("%s", out)
	c.nodes = append(c.nodes, n4)
	c.waitCaughtUp()
	// raft-wal drops only whole segments, and keeps serving entries of the head segment
	// below the first index it reports, so n4 may get the log from the start instead of
	// a snapshot; TestSingleNodeBecomesCluster always goes through a snapshot.
	if strings.Contains(n4.p.Logs(), "replica: installed a snapshot") {
		t.Logf("n4 caught up from a snapshot")
	} else {
		t.Logf("n4 caught up from the log")
	}
	// Traffic after the join reaches it too.
	publishAll(t, cl, topic, "after", 100, lg, nil)
	c.waitCaughtUp()
	stored := storedCount(t, cl, topic)
	c.stopAll()
	c.checkReplicasEqual(topic, stored)
}

// runCLI runs the dmq binary with args and returns its output; it fails the test on a
// non-zero exit.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(dmqtest.Binary(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dmq %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSingleNodeBecomesCluster turns a standalone broker's data directory into the first
// node of a cluster: the others join and receive its topics, groups and messages. Starting
// it with a peers list instead is refused, with the way to do it.
func TestSingleNodeBecomesCluster(t *testing.T) {
	const topic, total = "dev.cluster.migrate", 2000
	dir := t.TempDir()
	single := dmqtest.StartProcess(t, filepath.Join(dir, "n1"), "--standalone")
	publishToNewTopic(t, single.Addr, topic, total)
	single.Stop(t)

	c := threeNodesIn(t, dir)
	n1 := c.nodes[0]
	// With peers, the data could be overwritten by a node elected without it: refused.
	out, err := exec.Command(dmqtest.Binary(t), "server", "--data", n1.dir, "--node-id", "n1", "--peers", "n1="+n1.raft+",n2="+c.nodes[1].raft,
		"--cluster-listen", n1.raft, "--listen", n1.grpc, "--http", n1.http).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "start it alone as the cluster's first node") {
		t.Fatalf("bootstrapping with peers over existing data: %v\n%s", err, out)
	}
	// With several shards, its topics would stay in s0 while their names point elsewhere.
	out, err = exec.Command(dmqtest.Binary(t), "server", "--data", n1.dir, "--node-id", "n1", "--shards", "3",
		"--cluster-listen", n1.raft, "--listen", n1.grpc, "--http", n1.http).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cluster of one shard") {
		t.Fatalf("a single node's data as a cluster of 3 shards: %v\n%s", err, out)
	}
	n1.p = dmqtest.StartProcess(t, n1.dir, "--cluster-listen", n1.raft, "--listen", n1.grpc, "--http", n1.http)
	c.growFromFirst(topic, total)
}

// TestPlainServerGrowsIntoACluster: a plain dmq server (a one-voter cluster) with messages
// and a consumer group takes two more nodes while it runs, without a restart; they receive
// everything, and once one of them leads, every message is delivered.
func TestPlainServerGrowsIntoACluster(t *testing.T) {
	const topic, total = "dev.cluster.grow", 2000
	c := threeNodesIn(t, t.TempDir())
	n1 := c.nodes[0]
	n1.p = dmqtest.StartProcess(t, n1.dir, "--cluster-listen", n1.raft, "--listen", n1.grpc, "--http", n1.http)
	publishToNewTopic(t, n1.grpc, topic, total)
	c.growFromFirst(topic, total)
}

// publishToNewTopic creates topic with group g on the broker at addr and publishes total
// messages to it, every one acked.
func publishToNewTopic(t *testing.T, addr, topic string, total int) {
	t.Helper()
	cl, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, topic, "g")
	lg := newLedger()
	publishAll(t, cl, topic, "s", total, lg, nil)
	lg.checkAcked(t, total)
}

// threeNodesIn lays out nodes n1..n3 under dir, none started.
func threeNodesIn(t *testing.T, dir string) *testCluster {
	c := &testCluster{t: t}
	for i := 1; i <= 3; i++ {
		c.nodes = append(c.nodes, &node{id: fmt.Sprintf("n%d", i), grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: filepath.Join(dir, fmt.Sprintf("n%d", i))})
	}
	return c
}

// growFromFirst starts n2 and n3 empty, adds them to the running n1, which holds total
// messages of topic for group g, moves leadership off n1, and checks that the new leader
// delivers them all and that every replica holds them.
func (c *testCluster) growFromFirst(topic string, total int) {
	t, n1 := c.t, c.nodes[0]
	for _, nd := range c.nodes[1:] {
		nd.p = dmqtest.StartProcess(t, nd.dir, "--node-id", nd.id, "--join", "--cluster-listen", nd.raft, "--listen", nd.grpc, "--http", nd.http)
		runCLI(t, "cluster", "add-node", nd.id, nd.raft, "--http", n1.http)
	}
	c.waitCaughtUp()
	// The old data is on every node: n1 hands leadership over and the new leader serves it.
	runCLI(t, "cluster", "transfer-leader", "--http", n1.http)
	c.waitLeader(n1)
	cl := c.dial()
	k := newLedger()
	consume(t, cl, topic, "g", k)
	dmqtest.Eventually(t, 30*time.Second, "the messages stored before the cluster delivered", func() bool {
		_, delivered, _ := k.counts()
		return delivered == total
	})
	c.stopAll()
	c.checkReplicasEqual(topic, uint64(total))
}

// TestNodeAwayCatchesUpFromASnapshot stops a follower, writes megabytes while the others
// snapshot and compact their Raft logs past its position, and restarts it: the leader
// sends it a snapshot (recorded by reference on the leader, expanded to be sent), and it
// ends with the same log as the others.
func TestNodeAwayCatchesUpFromASnapshot(t *testing.T) {
	const topic = "dev.cluster.away"
	small := []string{"--snapshot-entries", "16", "--snapshot-interval", "100ms", "--trailing-entries", "4", "--segment-bytes", "1048576"}
	c := startCluster(t, 3, small...)
	cl := c.dial()
	createTopic(t, cl, topic)
	leader := c.waitLeader(nil)
	var away *node
	for _, nd := range c.nodes {
		if nd != leader {
			away = nd
		}
	}
	publish := func(from, n int) {
		prod := cl.NewProducer(topic, client.MaxInFlight(200), client.BatchSize(20))
		defer prod.Close()
		body := strings.Repeat("x", 1000)
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Add(1)
			err := prod.PublishAsync(context.Background(), &client.Message{Body: []byte(fmt.Sprintf("%06d%s", i, body))}, func(_ client.PublishResult, err error) {
				defer wg.Done()
				if err != nil {
					t.Errorf("publish %d: %v", i, err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
	}
	publish(0, 200)
	c.waitCaughtUp()
	st, err := status(away)
	if err != nil {
		t.Fatal(err)
	}
	behind := st.Groups[0].LastLogIndex
	c.stop(away)
	publish(200, 6000)
	dmqtest.Eventually(t, 30*time.Second, "the leader's log compacted past the stopped node", func() bool {
		st, err := status(leader)
		if err != nil {
			return false
		}
		if st.Groups[0].FirstLogIndex > behind+100 {
			return true
		}
		publish(0, 1) // keep writing so that snapshots go on
		return false
	})
	c.start(away)
	c.waitCaughtUp()
	if !strings.Contains(away.p.Logs(), "replica: installed a snapshot") {
		t.Fatalf("%s caught up without a snapshot; its notable log lines:\n%s", away.id, away.notableLogs())
	}
	stored := storedCount(t, cl, topic)
	c.stopAll()
	c.checkReplicasEqual(topic, stored)
}

// TestGracefulStopKeepsTheLatestAcks stops the leader cleanly right after its consumer
// acked half the messages, on a one-voter cluster (restarted) and on three nodes: the
// acks it had proposed without waiting are applied before its broker closes and before
// it hands the shard on, so the leader after it redelivers the unacked half only.
// Raft's shutdown used to drop such proposals on a one-voter cluster: a third of the
// acks came back.
func TestGracefulStopKeepsTheLatestAcks(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) { gracefulStopKeepsAcks(t, nodes) })
	}
}

func gracefulStopKeepsAcks(t *testing.T, nodes int) {
	const topic, n = "dev.cluster.stopacks", 200
	c := startCluster(t, nodes)
	cl := c.dial()
	leader := c.waitLeader(nil)
	createTopic(t, cl, topic, "g")
	lg := newLedger()
	publishAll(t, cl, topic, "m", n, lg, nil)

	// Ack the odd messages; the even ones stay in flight until the leader stops.
	var mu sync.Mutex
	acked, again := map[string]bool{}, map[string]int{}
	var stopped atomic.Bool
	block := make(chan struct{})
	seen := make(chan struct{}, n)
	handler := func(_ context.Context, m *client.Message) error {
		body := string(m.Body)
		mu.Lock()
		if acked[body] {
			again[body]++
		}
		mu.Unlock()
		var i int
		fmt.Sscanf(body, "m-%d", &i)
		if stopped.Load() {
			return fmt.Errorf("not now") // a re-attached first consumer leaves them to the second
		}
		select {
		case seen <- struct{}{}:
		default:
		}
		if i%2 == 0 {
			<-block
			return fmt.Errorf("stopping")
		}
		mu.Lock()
		acked[body] = true
		mu.Unlock()
		return nil
	}
	k, err := cl.Subscribe(context.Background(), topic, "g", handler, client.Concurrency(n), client.Prefetch(n))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case <-seen:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d messages delivered", i, n)
		}
	}
	dmqtest.Eventually(t, 10*time.Second, "the odd half acked", func() bool {
		g, err := cl.GetGroup(context.Background(), topic, "g")
		return err == nil && g.Stats.InFlight == n/2
	})
	stopped.Store(true)
	c.stop(leader)
	close(block)
	k.Close()
	if nodes == 1 {
		c.start(leader)
	}

	// A second consumer, through the new leader, gets the even half only.
	got := map[string]int{}
	k2, err := cl.Subscribe(context.Background(), topic, "g", func(_ context.Context, m *client.Message) error {
		body := string(m.Body)
		mu.Lock()
		got[body]++
		if acked[body] {
			again[body]++
		}
		mu.Unlock()
		return nil
	}, client.Prefetch(n))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	dmqtest.Eventually(t, 20*time.Second, "the unacked half redelivered and acked", func() bool {
		g, err := cl.GetGroup(context.Background(), topic, "g")
		return err == nil && g.Stats.AckFloor == n && g.Stats.InFlight == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != n/2 {
		t.Fatalf("%d messages acked before the stop, want %d", len(acked), n/2)
	}
	if len(again) > 0 {
		t.Errorf("%d acked messages delivered again after the leader stopped cleanly, e.g. %v", len(again), slices.Collect(maps.Keys(again))[:min(5, len(again))])
	}
	for i := 0; i < n; i += 2 {
		if got[fmt.Sprintf("m-%d", i)] == 0 {
			t.Errorf("unacked message m-%d not redelivered", i)
		}
	}
}

// TestLogGrowthTakesSnapshots publishes 8 MiB in few, large entries to a one-voter
// cluster with --snapshot-bytes 1 MiB: far below raft's own trigger (8192 entries,
// checked every 2 minutes), yet the node snapshots as the bytes grow, so a restart
// replays about a mebibyte of log, not all of it. Then kill -9 and a restart: every
// acked message is there.
func TestLogGrowthTakesSnapshots(t *testing.T) {
	const topic, n = "dev.cluster.snapbytes", 2000
	c := startCluster(t, 1, "--snapshot-bytes", "1048576")
	cl := c.dial()
	createTopic(t, cl, topic, "audit")
	lg := newLedger()
	body := strings.Repeat("x", 4000)
	prod := cl.NewProducer(topic, client.MaxInFlight(100), client.BatchSize(100))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		b := fmt.Sprintf("s-%d-%s", i, body)
		wg.Add(1)
		if err := prod.PublishAsync(context.Background(), &client.Message{Body: []byte(b)}, func(r client.PublishResult, err error) {
			defer wg.Done()
			if err != nil {
				lg.fail(b, err)
				return
			}
			lg.ack(b, r.ID)
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	prod.Close()
	nd := c.nodes[0]
	var st server.Status
	dmqtest.Eventually(t, 10*time.Second, "a snapshot taken as the log grew", func() bool {
		var err error
		st, err = status(nd)
		return err == nil && len(st.Groups) > 0 && st.Groups[0].LastSnapshotIndex > 0
	})
	g := st.Groups[0]
	t.Logf("last log index %d, last snapshot index %d", g.LastLogIndex, g.LastSnapshotIndex)
	if g.LastLogIndex > 8192 {
		t.Fatalf("the test wrote %d entries: raft's own threshold could have taken the snapshot", g.LastLogIndex)
	}

	nd.p.Kill()
	c.start(nd)
	c.waitLeader(nil)
	cl2 := c.dial()
	consume(t, cl2, topic, "audit", lg)
	checkQueue(t, cl2, topic, lg, n)
}
