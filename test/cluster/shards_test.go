package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/shard"
)

// topicPerShard returns one topic name held by each of n shards.
func topicPerShard(prefix string, n int) []string {
	topics := make([]string, n)
	for i, found := 0, 0; found < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if k := shard.Of(name, n); topics[k] == "" {
			topics[k] = name
			found++
		}
	}
	return topics
}

// waitSpread waits until every shard has a leader and no node leads two, and returns
// each shard's leader.
func (c *testCluster) waitSpread(timeout time.Duration) []*node {
	c.t.Helper()
	var leaders []*node
	dmqtest.Eventually(c.t, timeout, "the shards' leaders on different nodes", func() bool {
		leaders = make([]*node, c.shards)
		for _, nd := range c.nodes {
			st, err := status(nd)
			if err != nil {
				return false
			}
			leads := 0
			for g, gs := range st.Groups {
				if gs.Role == "leader" {
					leaders[g] = nd
					leads++
				}
			}
			if leads > 1 {
				return false
			}
		}
		for _, l := range leaders {
			if l == nil {
				return false
			}
		}
		return true
	})
	return leaders
}

// getJSON fetches a node's HTTP API.
func getJSON(t *testing.T, nd *node, path string, v any) int {
	t.Helper()
	hc := http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get("http://" + nd.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// TestShardsSpreadLeadersAndFailOver runs three nodes with three shards: the leaders
// spread so that each node serves one shard; every node answers for every topic (gRPC
// through the SDK's redirects, HTTP passed on to the shard's leader); kill -9 of the
// node leading one shard under pipelined load on all three loses nothing, the other
// shards keep serving, and once the node is back the shard moves home.
func TestShardsSpreadLeadersAndFailOver(t *testing.T) {
	const shards, perTopic = 3, 3000
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards))
	leaders := c.waitSpread(60 * time.Second)
	topics := topicPerShard("dev.shards.t", shards)
	cl := c.dial()
	for _, topic := range topics {
		createTopic(t, cl, topic, "g")
	}

	// Every node lists every topic and serves each one's details (passed on to the
	// shard's leader), whichever shards it leads.
	for _, nd := range c.nodes {
		var list struct {
			Topics []struct{ Name string }
			Total  int
		}
		if code := getJSON(t, nd, "/api/v1/topics", &list); code != http.StatusOK || list.Total != shards || len(list.Topics) != shards {
			t.Fatalf("%s: GET /api/v1/topics = %d, %+v; want the %d topics", nd.id, code, list, shards)
		}
		for _, topic := range topics {
			var tp struct{ Name string }
			if code := getJSON(t, nd, "/api/v1/topics/"+topic, &tp); code != http.StatusOK || tp.Name != topic {
				t.Fatalf("%s: GET /api/v1/topics/%s = %d, %+v", nd.id, topic, code, tp)
			}
		}
	}
	ts, err := cl.ListTopics(t.Context(), client.TopicFilter{})
	if err != nil || len(ts) != shards {
		t.Fatalf("ListTopics through the SDK: %d topics, %v; want %d", len(ts), err, shards)
	}

	ledgers := make([]*ledger, shards)
	for k, topic := range topics {
		ledgers[k] = newLedger()
		consume(t, cl, topic, "g", ledgers[k])
	}
	victim := leaders[1]
	var killedAt atomic.Int64
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		dmqtest.Eventually(t, 60*time.Second, "a third of shard s1's publishes acknowledged", func() bool {
			acked, _, _ := ledgers[1].counts()
			return acked >= perTopic/3
		})
		killedAt.Store(time.Now().UnixNano())
		victim.p.Kill()
		t.Logf("killed %s, leader of shard s1, with -9", victim.id)
	}()
	var wg sync.WaitGroup
	for k, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishAll(t, cl, topic, fmt.Sprintf("s%d", k), perTopic, ledgers[k], nil)
		}()
	}
	wg.Wait()
	<-killed

	// Shard s1 has a new leader; report how long it took.
	var failover time.Duration
	dmqtest.Eventually(t, 15*time.Second, "a new leader for shard s1", func() bool {
		for _, nd := range c.nodes {
			if nd == victim {
				continue
			}
			if st, err := status(nd); err == nil && st.Groups[1].Role == "leader" {
				failover = time.Duration(st.Groups[1].LeadingSinceMs*1e6 - killedAt.Load())
				return true
			}
		}
		return false
	})
	t.Logf("shard s1 served again %v after the kill", failover.Round(time.Millisecond))
	if failover > 5*time.Second {
		t.Errorf("failover of shard s1 took %v, want under 5s", failover)
	}
	for k, topic := range topics {
		checkQueue(t, cl, topic, ledgers[k], perTopic)
	}

	// The node comes back, catches up, and the balancer gives it a shard again.
	c.start(victim)
	c.waitCaughtUp()
	again := c.waitSpread(60 * time.Second)
	var names []string
	for k, l := range again {
		names = append(names, fmt.Sprintf("s%d:%s", k, l.id))
	}
	t.Logf("leaders after the restart: %s", strings.Join(names, " "))
	c.stopAll()
	for _, topic := range topics {
		c.checkReplicasEqual(topic, perTopic)
	}
}
