package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Replacing nodes: dmq cluster remove-node for a SIGKILLed node, through any live node,
// succeeds at its first try; add-node answers once the new node votes in every shard
// placed on it; a cluster whose every node was replaced keeps serving the clients that
// were started with the original nodes' addresses; and a node started again under the
// id of a member whose data it lacks is refused.

// join starts a fresh node with --join and the cluster's shard count; it is not a
// member until added.
func (c *testCluster) join(id string) *node {
	c.t.Helper()
	nd := &node{id: id, grpc: dmqtest.FreePort(c.t), http: dmqtest.FreePort(c.t), raft: dmqtest.FreePort(c.t), dir: c.t.TempDir()}
	nd.p = dmqtest.StartProcess(c.t, nd.dir, "--node-id", nd.id, "--join", "--shards", fmt.Sprint(max(c.shards, 1)),
		"--cluster-listen", nd.raft, "--listen", nd.grpc, "--http", nd.http)
	return nd
}

// checkVoterEverywhere fails unless, as each shard's leader says, id is a voting member
// of every shard (a cluster whose shards are on every node). A leader that does not count
// it fails the check at once; the wait is only for a leader in each shard (one may be
// handing its shard to the balancer's choice at that moment).
func (c *testCluster) checkVoterEverywhere(id string) {
	c.t.Helper()
	seen := map[string]bool{}
	dmqtest.Eventually(c.t, 10*time.Second, "a leader in every shard", func() bool {
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				continue
			}
			for _, g := range st.Groups {
				if g.Role != "leader" {
					continue
				}
				if !slices.ContainsFunc(g.Servers, func(s cluster.Server) bool { return s.ID == id && s.Voter }) {
					c.t.Fatalf("%s's leader %s counts members %+v: %s is not a voter", g.Name, nd.id, g.Servers, id)
				}
				seen[g.Name] = true
			}
		}
		return len(seen) == max(c.shards, 1)
	})
}

// checkMembers waits until every node's every shard has exactly the members ids.
func (c *testCluster) checkMembers(ids ...string) {
	c.t.Helper()
	slices.Sort(ids)
	var why string
	defer func() {
		if c.t.Failed() {
			c.t.Logf("last difference: %s", why)
		}
	}()
	dmqtest.Eventually(c.t, 20*time.Second, fmt.Sprintf("every shard's members %v", ids), func() bool {
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				why = err.Error()
				return false
			}
			for _, g := range st.Groups {
				var got []string
				for _, s := range g.Servers {
					got = append(got, s.ID)
				}
				slices.Sort(got)
				if !slices.Equal(got, ids) {
					why = fmt.Sprintf("%s: %s has members %v", nd.id, g.Name, got)
					return false
				}
			}
		}
		return true
	})
}

// TestRemoveDeadNodeFirstTry SIGKILLs the node that leads s0 and s1 of a three-shard
// cluster and removes it at once through another node: the removal waits for the
// elections the death started and is made by each shard's new leader, at the first try.
func TestRemoveDeadNodeFirstTry(t *testing.T) {
	c := startCluster(t, 3, "--shards", "3")
	c.waitSpread(60 * time.Second) // n1 leads s0, n2 s1, n3 s2
	// n1 leads s1 too: the removal meets the dead leader in s0 (the request is passed on
	// to s0's leader) and in s1 (s0's leader asks s1's).
	dmqtest.Eventually(t, 30*time.Second, "n1 leads s1", func() bool {
		exec.Command(dmqtest.Binary(t), "cluster", "transfer-leader", "n1", "--shard", "s1", "--http", c.nodes[1].http).Run()
		st, err := status(c.nodes[0])
		return err == nil && len(st.Groups) == 3 && st.Groups[1].Role == "leader"
	})
	victim := c.nodes[0]
	victim.p.Kill()
	<-victim.p.Done()
	// At once, as dmq cluster remove-node asks (its process takes longer to start than
	// the others take to notice the death).
	start := time.Now()
	req, err := http.NewRequest(http.MethodDelete, c.nodes[2].url("/api/v1/cluster/nodes/"+victim.id), nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.nodes[2].httpClient()
	hc.Timeout = 2 * time.Minute
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remove %s through %s at the first try: %s %s", victim.id, c.nodes[2].id, resp.Status, body)
	}
	t.Logf("the removal took %s", time.Since(start).Round(time.Millisecond))
	c.nodes = c.nodes[1:]
	c.checkMembers("n2", "n3")
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.remove.t", 3)
	load.publish(t, cl, 200, nil)
	load.check(t, cl, 200)
}

// TestAddNodeReturnsWhenVoterEverywhere adds a fourth node to a three-shard cluster that
// holds some data: when add-node returns, every shard's leader counts it as a voter, so
// that a node lost just after costs no shard its quorum.
func TestAddNodeReturnsWhenVoterEverywhere(t *testing.T) {
	const perTopic = 3000
	c := startCluster(t, 3, "--shards", "3")
	c.waitCaughtUp()
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.voter.t", 3)
	load.publish(t, cl, perTopic, nil)
	n4 := c.join("n4")
	start := time.Now()
	out := runCLI(t, "cluster", "add-node", n4.id, n4.raft, "--http", c.nodes[1].http)
	t.Logf("add-node took %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	c.nodes = append(c.nodes, n4)
	c.checkVoterEverywhere(n4.id)
	load.check(t, cl, perTopic)
	c.checkReplicas(perTopic, load.topics...)
}

// TestWholeClusterReplacedUnderLoad replaces each of the three nodes of a three-shard
// cluster in turn by a fresh one, as docs/operations/cluster.md shows (SIGKILL, remove-node,
// start with --join, add-node), under pipelined publishing with a consumer per topic.
// Clients dialled with the original nodes' addresses only keep working once every one of
// those is gone: they learned the new members from the nodes they reached. Every acked
// message is delivered, none is stored twice, and the new nodes' replicas are identical.
func TestWholeClusterReplacedUnderLoad(t *testing.T) {
	const perTopic = 4000
	c := startCluster(t, 3, "--shards", "3")
	c.waitCaughtUp()
	cl := c.dial()
	admin := c.dial() // admin calls only, as the operator client
	load := newShardLoad(t, cl, "dev.replace.t", 3)

	var replaced atomic.Bool
	published := make(chan struct{})
	go func() {
		defer close(published)
		load.publish(t, cl, perTopic, func(int) {
			if !replaced.Load() {
				time.Sleep(10 * time.Millisecond) // keep the load going through the replacements
			}
		})
	}()
	// The admin client asks something every half second, as a dashboard would, but only
	// while the cluster is settled: then s0 is led by its preferred node, an original one
	// until the last is replaced, and no answer redirects the client to a new node. It
	// can learn the new ones only from the members the nodes list.
	var adminOn atomic.Bool
	var adminCalls, adminErrs atomic.Int64
	stopAdmin := make(chan struct{})
	var adminDone sync.WaitGroup
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() { close(stopAdmin) })
		adminDone.Wait()
	}
	t.Cleanup(stop) // before the client closes
	adminDone.Add(1)
	go func() {
		defer adminDone.Done()
		for {
			select {
			case <-stopAdmin:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if !adminOn.Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := admin.GetTopic(ctx, load.topics[0])
			cancel()
			adminCalls.Add(1)
			if err != nil {
				adminErrs.Add(1)
				t.Logf("admin call: %v", err)
			}
		}
	}()
	adminOn.Store(true)
	time.Sleep(2 * time.Second)

	originals := slices.Clone(c.nodes)
	for k, old := range originals {
		adminOn.Store(false)
		live := c.nodes[len(c.nodes)-1] // the newest member: never the one replaced
		start := time.Now()
		old.p.Kill()
		<-old.p.Done()
		runCLI(t, "cluster", "remove-node", old.id, "--http", live.http)
		removed := time.Since(start)
		c.nodes = slices.DeleteFunc(c.nodes, func(nd *node) bool { return nd == old })
		fresh := c.join(fmt.Sprintf("n%d", 4+k))
		runCLI(t, "cluster", "add-node", fresh.id, fresh.raft, "--http", live.http)
		c.nodes = append(c.nodes, fresh)
		c.checkVoterEverywhere(fresh.id)
		t.Logf("%s replaced by %s: removed after %s, the new node votes everywhere after %s",
			old.id, fresh.id, removed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		c.waitSpread(30 * time.Second) // settled: s0 led by the first member by id
		adminOn.Store(true)
		time.Sleep(6 * time.Second) // the admin client asks (more than the SDK's membersRefresh)
	}
	replaced.Store(true)

	// Every original node is gone: the clients reach the new ones.
	for _, old := range originals {
		if _, err := os.Stat(old.dir); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ListTopics(ctx, client.TopicFilter{}); err != nil {
		t.Fatalf("a client dialled with the original nodes, after they were all replaced: %v", err)
	}
	stop()
	t.Logf("admin calls during the replacements: %d, failed: %d", adminCalls.Load(), adminErrs.Load())
	<-published
	load.check(t, cl, perTopic)
	c.checkReplicas(perTopic, load.topics...)
}

// TestFreshNodeUnderAMembersIDIsRefused starts n2 again from an empty data directory with
// --peers, as if its disk had been replaced: it would start an empty cluster state of its
// own and call elections for ever. It is refused with what to do instead, and doing that
// (remove-node, --join, add-node) brings it back.
func TestFreshNodeUnderAMembersIDIsRefused(t *testing.T) {
	c := startCluster(t, 3, "--shards", "2")
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.fresh.t", 2)
	load.publish(t, cl, 200, nil)
	c.waitCaughtUp()
	n2 := c.nodes[1]
	n2.p.Kill()
	<-n2.p.Done()
	if err := os.RemoveAll(n2.dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"server", "--data", n2.dir, "--node-id", n2.id, "--peers", c.peers, "--shards", "2",
		"--cluster-listen", n2.raft, "--listen", n2.grpc, "--http", n2.http}
	out, err := exec.CommandContext(ctx, dmqtest.Binary(t), args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("a fresh n2 with --peers was not refused within 30 s:\n%s", grepLines(string(out), "cluster"))
	}
	if err == nil || !strings.Contains(string(out), "--join") || !strings.Contains(string(out), "remove-node") {
		t.Fatalf("a fresh n2 with --peers: %v, want a refusal naming remove-node and --join:\n%s", err, out)
	}
	t.Logf("refused: %s", grepLines(string(out), "--join"))

	// The remedy.
	runCLI(t, "cluster", "remove-node", n2.id, "--http", c.nodes[0].http)
	c.nodes = slices.Delete(c.nodes, 1, 2)
	again := c.join("n2")
	runCLI(t, "cluster", "add-node", again.id, again.raft, "--http", c.nodes[0].http)
	c.nodes = append(c.nodes, again)
	c.checkVoterEverywhere(again.id)
	load.check(t, cl, 200)
	c.checkReplicas(200, load.topics...)
}
