package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/shard"
)

// placed is shard i's placement over the test cluster's nodes, those gone replaced.
func (c *testCluster) placed(i int) []string {
	var ids []string
	for _, nd := range c.nodes {
		ids = append(ids, nd.id)
	}
	return shard.PlacementAvoiding(i, ids, c.replicas, func(id string) bool { return slices.Contains(c.gone, id) })
}

// waitPlaced waits until every node keeps exactly the shards placed on it, every shard's
// leader counts exactly the placed nodes as voting members, and each shard is led by the
// first node of its placement.
//
// A leader's transfer that timed out under load is asked for again only a minute later
// (cluster.ErrTransferTooSoon), so the wait is at least two minutes.
func (c *testCluster) waitPlaced(timeout time.Duration) {
	c.t.Helper()
	timeout = max(timeout, 2*time.Minute)
	var why string
	defer func() {
		if c.t.Failed() {
			c.t.Logf("last difference: %s", why)
			var http []string
			for _, nd := range c.nodes {
				http = append(http, nd.http)
			}
			out, _ := exec.Command(dmqtest.Binary(c.t), "cluster", "status", "--http", strings.Join(http, ",")).CombinedOutput()
			c.t.Logf("cluster status:\n%s", out)
			for _, nd := range c.nodes {
				c.t.Logf("%s's notable log lines:\n%s", nd.id, grepLines(nd.notableLogs(), "cluster:"))
			}
		}
	}()
	dmqtest.Eventually(c.t, timeout, "every shard kept by the nodes of its placement", func() bool {
		why = ""
		for _, nd := range c.nodes {
			if slices.Contains(c.gone, nd.id) {
				continue
			}
			st, err := status(nd)
			if err != nil {
				why = fmt.Sprintf("%s: %v", nd.id, err)
				return false
			}
			var kept, want []string
			for _, g := range st.Groups {
				kept = append(kept, g.Name)
				i, _ := shard.Index(g.Name)
				placed := c.placed(i)
				if g.Role != "leader" {
					continue
				}
				if nd.id != placed[0] {
					why = fmt.Sprintf("%s is led by %s, want %s", g.Name, nd.id, placed[0])
					return false
				}
				var voters []string
				for _, srv := range g.Servers {
					if srv.Voter {
						voters = append(voters, srv.ID)
					}
				}
				slices.Sort(voters)
				slices.Sort(placed)
				if len(g.Servers) != len(placed) || !slices.Equal(voters, placed) {
					why = fmt.Sprintf("%s's members are %+v, want voters %v", g.Name, g.Servers, placed)
					return false
				}
			}
			for i := range c.shards {
				if slices.Contains(c.placed(i), nd.id) {
					want = append(want, shard.Name(i))
				}
			}
			if !slices.Equal(kept, want) {
				why = fmt.Sprintf("%s keeps %v, want %v", nd.id, kept, want)
				return false
			}
		}
		return true
	})
}

// waitDataPlaced waits until each node has a data directory for the shards placed on it
// and none for the others (a dropped replica's is deleted just after the node stops
// reporting it).
func (c *testCluster) waitDataPlaced() {
	c.t.Helper()
	var why string
	defer func() {
		if c.t.Failed() {
			c.t.Log(why)
		}
	}()
	dmqtest.Eventually(c.t, 10*time.Second, "a data directory on each node for its shards only", func() bool {
		for i := 1; i < c.shards; i++ {
			for _, nd := range c.nodes {
				_, err := os.Stat(filepath.Join(nd.dir, "shards", shard.Name(i)))
				if keeps := slices.Contains(c.placed(i), nd.id); keeps != (err == nil) {
					why = fmt.Sprintf("%s keeps s%d: %t, but its data directory for it: %v", nd.id, i, keeps, err)
					return false
				}
			}
		}
		return true
	})
}

// TestShardsKeptByThreeOfFiveNodes runs five nodes with five shards, each kept by three
// of them (--replicas 3; s0, with the cluster-wide state, by all five). Every node leads
// the shard placed first on it and keeps only its placed shards' data; every node answers
// for every topic, also one whose shard it does not keep. kill -9 of a node under load
// loses nothing; removing it moves its replicas, and those its departure displaces, to
// the nodes of the new placement, which catch up before the old replicas are removed and
// their data deleted. A node that joins gets its share the same way. Every acked message
// is delivered once stored, and the replicas of each shard are identical.
func TestShardsKeptByThreeOfFiveNodes(t *testing.T) {
	const shards, perTopic = 5, 1500
	c := startCluster(t, 5, "--shards", fmt.Sprint(shards), "--replicas", "3")
	c.waitPlaced(60 * time.Second)
	c.waitDataPlaced()

	cl := c.dial()
	load := newShardLoad(t, cl, "dev.placed.t", shards)
	// A node that keeps no replica of a topic's shard passes its HTTP request on.
	for _, topic := range load.topics[1:] {
		i := shard.Of(topic, shards)
		k := slices.IndexFunc(c.nodes, func(nd *node) bool { return !slices.Contains(c.placed(i), nd.id) })
		// It learns the shard's leader from the others within a second of its election.
		dmqtest.Eventually(t, 5*time.Second, fmt.Sprintf("topic %s (shard s%d) from %s, which does not keep it", topic, i, c.nodes[k].id), func() bool {
			return getJSON(t, c.nodes[k], "/api/v1/topics/"+topic, nil) == http.StatusOK
		})
	}

	victim := c.nodes[1] // n2: in s0, s1 (which it leads) and s4
	published := make(chan struct{})
	var kill sync.Once
	go func() {
		defer close(published)
		load.publish(t, cl, perTopic, func(i int) {
			if i == perTopic/3 {
				kill.Do(victim.p.Kill)
			}
			if i%100 == 0 {
				time.Sleep(20 * time.Millisecond) // keep the load going through the moves
			}
		})
	}()
	<-victim.p.Done()
	// At once: the removal waits for the shards it led to elect a new leader.
	runCLI(t, "cluster", "remove-node", victim.id, "--http", c.nodes[0].http)
	c.nodes = slices.Delete(c.nodes, 1, 2)
	c.waitPlaced(120 * time.Second)
	<-published
	load.check(t, cl, perTopic)

	// n3 kept s2 (n3 n4 n5); over n1 n3 n4 n5, s2 is on n4 n5 n1: its replica is gone.
	c.waitDataPlaced()
	out := runCLI(t, "cluster", "status", "--http", c.nodes[0].http+","+c.nodes[1].http)
	t.Logf("%s", out)
	if !strings.Contains(out, "s1 is kept by") {
		t.Fatalf("cluster status does not say which nodes keep each shard:\n%s", out)
	}

	// A node joins, without --replicas: it takes the cluster's, and gets the shards the
	// placement over five nodes gives it.
	n6 := &node{id: "n6", grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: t.TempDir()}
	n6.p = dmqtest.StartProcess(t, n6.dir, "--node-id", n6.id, "--join", "--shards", fmt.Sprint(shards),
		"--cluster-listen", n6.raft, "--listen", n6.grpc, "--http", n6.http)
	runCLI(t, "cluster", "add-node", n6.id, n6.raft, "--http", c.nodes[1].http)
	c.nodes = append(c.nodes, n6)
	c.waitPlaced(120 * time.Second)
	c.checkReplicas(perTopic, load.topics...)
}

// TestSetReplicasMovesShards creates three nodes keeping every shard, then keeps each
// shard on one node (dmq cluster set-replicas 1): the other replicas are removed and
// their data deleted, and every message is still there. Back to every node (0): the
// replicas are added again and catch up. An even count is refused and changes nothing.
func TestSetReplicasMovesShards(t *testing.T) {
	const shards, perTopic = 3, 300
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards))
	c.waitPlaced(30 * time.Second)
	cl := c.dial()
	topics := topicPerShard("dev.rf.t", shards)
	for _, topic := range topics {
		createTopic(t, cl, topic, "g")
		publishAll(t, cl, topic, "m", perTopic, newLedger(), nil)
	}

	out, err := exec.Command(dmqtest.Binary(t), "cluster", "set-replicas", "2", "--http", c.nodes[0].http).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "even") {
		t.Fatalf("set-replicas 2: %v\n%s", err, out)
	}
	if st, err := status(c.nodes[1]); err != nil || st.Replicas != 0 {
		t.Fatalf("after a refused change the cluster keeps each shard on %d nodes (0: every node), %v", st.Replicas, err)
	}

	runCLI(t, "cluster", "set-replicas", "1", "--http", c.nodes[2].http)
	c.replicas = 1
	c.waitPlaced(60 * time.Second)
	c.waitDataPlaced()
	for _, topic := range topics {
		if n := storedCount(t, cl, topic); n != perTopic {
			t.Fatalf("%s holds %d messages on one replica, want %d", topic, n, perTopic)
		}
	}

	runCLI(t, "cluster", "set-replicas", "0", "--http", c.nodes[0].http)
	c.replicas = 0
	c.waitPlaced(60 * time.Second)
	for _, topic := range topics {
		lg := newLedger()
		consume(t, cl, topic, "g", lg)
		dmqtest.Eventually(t, 30*time.Second, "every message of "+topic+" delivered", func() bool {
			_, delivered, _ := lg.counts()
			return delivered == perTopic
		})
	}
	c.checkReplicas(perTopic, topics...)
}

// TestDeadNodesShardsAreCopiedElsewhere kills a node of four (each shard on three) and
// leaves it dead: after --replace-after, each shard it kept gets a replica on the next
// live node, which catches up before the dead one is removed from the shard (it stays a
// member). Every acked message is delivered. When the node is back, its shards move
// back to it and the stand-ins drop theirs; the replicas end identical.
func TestDeadNodesShardsAreCopiedElsewhere(t *testing.T) {
	const shards, perTopic = 4, 500
	c := startCluster(t, 4, "--shards", fmt.Sprint(shards), "--replicas", "3", "--replace-after", "3s")
	c.waitPlaced(60 * time.Second)
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.gone.t", shards)
	load.publish(t, cl, perTopic, nil)

	victim := c.nodes[1] // n2: keeps s1 (which it leads) and s3
	victim.p.Kill()
	<-victim.p.Done()
	c.gone = []string{victim.id}
	c.waitPlaced(60 * time.Second) // s1 on n3 n4 n1, s3 on n4 n1 n3
	load.check(t, cl, perTopic)
	if st, err := status(c.nodes[0]); err != nil || len(st.Groups[0].Servers) != 4 || !slices.Equal(st.Gone, c.gone) {
		t.Fatalf("the dead node is no longer a member, or not said to be gone: s0's members %+v, gone %v, %v", st.Groups[0].Servers, st.Gone, err)
	}
	if out := runCLI(t, "cluster", "status", "--http", c.nodes[0].http); !strings.Contains(out, "kept by other nodes until they are back: n2") {
		t.Fatalf("cluster status does not say n2 is gone:\n%s", out)
	}

	c.start(victim)
	c.gone = nil
	c.waitPlaced(90 * time.Second)
	c.checkReplicas(perTopic, load.topics...)
}
