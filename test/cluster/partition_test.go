package cluster_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/config"
	"google.golang.org/grpc/codes"
)

// TestIsolatedLeaderRefusesWrites cuts the leader off from the others: it must stop
// acknowledging publishes (a client pinned to it gets Unavailable) while the majority
// elects a new leader that serves them; after the partition heals the old leader
// follows and holds the same log.
func TestIsolatedLeaderRefusesWrites(t *testing.T) {
	const topic = "dev.cluster.split"
	faults := transport.NewFaults()
	c := startClusterWith(t, 3, faults)
	cl := c.dial()
	createTopic(t, cl, topic, "g")
	old := c.waitLeader(nil)

	// A client that talks to the old leader only and does not retry.
	pinned, err := client.Dial(old.grpc, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if _, err := pinned.Publish(context.Background(), topic, &client.Message{Body: []byte("before")}); err != nil {
		t.Fatalf("publish before the cut: %v", err)
	}

	faults.Partition(old.id)
	cut := time.Now()
	newLeader := c.waitLeader(old)
	t.Logf("leader %s cut off; %s serves after %v", old.id, newLeader.id, time.Since(cut).Round(time.Millisecond))

	// The minority side never acknowledges a write.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = pinned.Publish(ctx, topic, &client.Message{Body: []byte("minority")})
	cancel()
	if err == nil {
		t.Fatal("the cut-off old leader acknowledged a publish")
	}
	if code := client.Code(err); code != codes.Unavailable {
		t.Fatalf("publish on the cut-off leader: %v, want Unavailable", err)
	}

	// The majority serves: publishes through the seeds succeed.
	if _, err := cl.Publish(context.Background(), topic, &client.Message{Body: []byte("majority")}); err != nil {
		t.Fatalf("publish on the majority: %v", err)
	}
	faults.Heal()
	c.waitCaughtUp()
	checkMetrics(t, c, old)
	if n := storedCount(t, cl, topic); n != 2 {
		t.Fatalf("topic stores %d messages, want 2 (before, majority)", n)
	}
	c.stopAll()
	c.checkReplicasEqual(topic, 2)
}

// checkMetrics reads every node's /metrics: exactly one node leads, all applied the same
// index, and the node that lost leadership saw at least two leader changes. The nodes
// are read one after another, and an entry may commit in between (a node recording its
// address after the leader change): they are read again until they agree, for a while.
func checkMetrics(t *testing.T, c *testCluster, deposed *node) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if last = readMetrics(t, c, deposed); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(last)
		}
	}
}

// readMetrics is one reading of checkMetrics: "" when it holds, else what differs.
func readMetrics(t *testing.T, c *testCluster, deposed *node) string {
	t.Helper()
	leaders := 0
	applied := map[string]bool{}
	for _, nd := range c.nodes {
		resp, err := http.Get("http://" + nd.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metric := func(name string) string {
			m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*\} (\S+)$`).FindStringSubmatch(string(body))
			if m == nil {
				t.Fatalf("%s: /metrics has no %s", nd.id, name)
			}
			return m[1]
		}
		if metric("dmq_cluster_leader") == "1" {
			leaders++
		}
		applied[metric("dmq_cluster_applied_index")] = true
		if nd == deposed {
			if n, _ := strconv.Atoi(metric("dmq_cluster_leader_changes_total")); n < 2 {
				t.Fatalf("%s saw %d leader changes, want at least 2", nd.id, n)
			}
		}
	}
	if leaders != 1 || len(applied) != 1 {
		return fmt.Sprintf("metrics: %d leaders, applied indexes %v; want one leader and one index", leaders, applied)
	}
	return ""
}

// TestRandomFaultsLoseNothing runs producers and consumers of two topics on two shards
// through a random schedule of network faults (s0's leader isolated, one-way cuts, a slow
// follower, heals) and checks the total queue of each: every acknowledged publish
// delivered, none stored twice, the replicas identical. DMQ_CLUSTER_SEED replays a
// schedule.
func TestRandomFaultsLoseNothing(t *testing.T) {
	randomFaults(t, 3, 2, 0, 0, 5000, time.Second)
}

// TestRandomFaultsWhileReplicasMove is the same with five nodes keeping each of three
// shards on three, and dead nodes replaced after 3 s: faults that last make shards move
// to stand-ins and back while they are written, and a node cut off may be dropping a
// replica while its group moves on.
func TestRandomFaultsWhileReplicasMove(t *testing.T) {
	randomFaults(t, 5, 3, 3, 3*time.Second, 6000, 4*time.Second)
}

// randomFaults runs the schedule over nodes, one fault every 0.3 to 1.2 stepLen, while producers publish total messages to each shard's topic.
func randomFaults(t *testing.T, nodes, shards, replicas int, replaceAfter time.Duration, total int, stepLen time.Duration) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DMQ_CLUSTER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DMQ_CLUSTER_SEED: %v", err)
		}
	}
	t.Logf("fault schedule seed %d (DMQ_CLUSTER_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	faults := transport.NewFaults()
	c := startConfigured(t, nodes, faults, func(_ *node, cfg *config.Config) {
		cfg.Shards, cfg.Replicas, cfg.ReplaceAfter = shards, replicas, replaceAfter
	})
	c.shards, c.replicas = shards, replicas
	if replicas > 0 {
		c.waitPlaced(60 * time.Second)
	}
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.cluster.chaos", shards)

	stop := make(chan struct{})
	scheduleDone := make(chan struct{})
	go func() {
		defer close(scheduleDone)
		var ids []string
		for _, nd := range c.nodes {
			ids = append(ids, nd.id)
		}
		for step := 0; ; step++ {
			select {
			case <-stop:
				faults.Heal()
				return
			case <-time.After(stepLen * time.Duration(300+rng.IntN(900)) / 1000):
			}
			a := ids[rng.IntN(len(ids))]
			b := ids[(slices.Index(ids, a)+1+rng.IntN(len(ids)-1))%len(ids)] // another node
			switch k := rng.IntN(6); {
			case k <= 1:
				if st, err := status(c.nodes[0]); err == nil && st.Leader.ID != "" {
					a = st.Leader.ID
				}
				faults.Partition(a)
				t.Logf("step %d: isolate %s", step, a)
			case k == 2:
				faults.Block(a, b)
				t.Logf("step %d: cut %s -> %s", step, a, b)
			case k == 3:
				faults.Delay(a, b, time.Duration(5+rng.IntN(40))*time.Millisecond)
				t.Logf("step %d: slow %s -> %s", step, a, b)
			default:
				faults.Heal()
				t.Logf("step %d: heal", step)
			}
		}
	}()
	load.publish(t, cl, total, func(i int) {
		if i%100 == 0 {
			time.Sleep(stepLen / 10) // keep the load going through several steps
		}
	})
	close(stop)
	<-scheduleDone
	load.check(t, cl, total)
	if replicas > 0 {
		c.waitPlaced(120 * time.Second) // the shards moved back
		c.waitDataPlaced()
	}
	c.checkReplicas(uint64(total), load.topics...)
}
