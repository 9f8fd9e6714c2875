package browser_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/server"
)

// clusterMember is one node of an in-process cluster.
type clusterMember struct {
	id string
	s  *dmqtest.Server
}

// startConsoleCluster runs n cluster nodes of the given number of shards in
// this process (gRPC and HTTP on 127.0.0.1:0, Raft on free loopback ports),
// each stopped at the end of the test, and waits until one of them leads
// shard s0 and serves clients.
func startConsoleCluster(t *testing.T, n, shards int) ([]*clusterMember, *clusterMember) {
	t.Helper()
	base := t.TempDir()
	var members []*clusterMember
	var peers, raft []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		addr := dmqtest.FreePort(t)
		members = append(members, &clusterMember{id: id})
		raft = append(raft, addr)
		peers = append(peers, id+"="+addr)
	}
	for i, m := range members {
		m.s = dmqtest.Start(t, filepath.Join(base, m.id), func(c *config.Config) {
			c.NodeID, c.Peers, c.ClusterListen, c.Shards = m.id, strings.Join(peers, ","), raft[i], shards
		})
	}
	return members, waitClusterLeader(t, members, nil)
}

// clusterStatus asks a node for its view of the cluster.
func clusterStatus(m *clusterMember) (server.Status, error) {
	var st server.Status
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + m.s.HTTPAddr() + "/api/v1/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/v1/cluster: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitClusterLeader waits until a member other than not reports itself leader.
func waitClusterLeader(t *testing.T, members []*clusterMember, not *clusterMember) *clusterMember {
	t.Helper()
	var leader *clusterMember
	dmqtest.Eventually(t, 20*time.Second, "a cluster node that reports role leader", func() bool {
		for _, m := range members {
			if m == not {
				continue
			}
			if st, err := clusterStatus(m); err == nil && st.Role == "leader" && st.NodeID == m.id {
				leader = m
				return true
			}
		}
		return false
	})
	return leader
}

// memberRow is a row of the Cluster page's members table as the page shows it.
type memberRow struct {
	ID        string `json:"id"`
	Role      string `json:"role"`      // leader or follower
	Healthy   string `json:"healthy"`   // true, false or unknown
	Reachable string `json:"reachable"` // true, false or unknown
	ReachErr  string `json:"reachErr"`  // the last error asking an unreachable member
	State     string `json:"state"`
	Term      string `json:"term"`
	Applied   string `json:"applied"`
	Lag       string `json:"lag"`
}

// membersJS reads the members table; cells without a value read "unknown".
const membersJS = `[...document.querySelectorAll('#cluster-members tbody tr')].map((tr) => {
  const col = (c) => { const e = tr.querySelector('[data-col="' + c + '"]'); return !e ? '' : e.hasAttribute('data-unknown') ? 'unknown' : (e.dataset.healthy || e.dataset.reachable || e.textContent); };
  const id = tr.querySelector('[data-member]');
  const role = tr.querySelector('[data-node-role]');
  const reachErr = tr.querySelector('[data-reach-error]');
  return { id: id ? id.textContent : '', role: role ? role.dataset.nodeRole : '', healthy: col('healthy'), reachable: col('reachable'),
    reachErr: reachErr ? reachErr.dataset.reachError : '', state: col('state'), term: col('term'), applied: col('applied'), lag: col('lag') };
})`

func (b *browser) members() []memberRow {
	b.t.Helper()
	return eval[[]memberRow](b, membersJS)
}

// waitMembers waits until the members table satisfies ok (the page
// refreshes itself every few seconds).
func (b *browser) waitMembers(what string, ok func([]memberRow) bool) []memberRow {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		rows := b.members()
		if ok(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting for the members table to show %s: it shows %+v", what, rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ownApplied asks every running member for its applied index in each
// shard, as it reports it itself: by node id, the shards in order.
func ownApplied(members []*clusterMember) map[string][]uint64 {
	own := map[string][]uint64{}
	for _, m := range members {
		st, err := clusterStatus(m)
		if err != nil {
			continue // stopped
		}
		for _, g := range st.Groups {
			own[m.id] = append(own[m.id], g.AppliedIndex)
		}
	}
	return own
}

// shownNum reads a number as the page formats it ("1,234").
func shownNum(s string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.ReplaceAll(s, ",", ""), 10, 64)
	return n, err == nil
}

// appliedAsOwn reports whether shown, the applied index the page shows for
// a node in shard i, is the one that node reports itself (own). The page
// reads it from the serving node, which asks every second: a caller polls
// until they agree, so that indexes may move forward meanwhile.
func appliedAsOwn(shown string, own map[string][]uint64, id string, i int) bool {
	n, ok := shownNum(shown)
	return ok && n > 0 && i < len(own[id]) && n == own[id][i]
}

func rowOf(rows []memberRow, id string) memberRow {
	for _, r := range rows {
		if r.ID == id {
			return r
		}
	}
	return memberRow{}
}

// The Cluster page of a three-node cluster, opened on the leader from the
// navigation: the cluster id, this node as leader, every member with the
// leader marked, the followers healthy in the leader's view and reachable,
// and every member's applied index as that member reports it itself
// (GET /api/v1/cluster on it), with no lag. After the leader stops, the page
// served by the new leader names the new leader, and the stopped node is
// unhealthy and unreachable, with the error of asking it.
func TestConsoleClusterPageShowsMembersAndFollowsFailover(t *testing.T) {
	members, leader := startConsoleCluster(t, 3, 1)
	ids := []string{"n1", "n2", "n3"}
	b := newBrowser(t, "http://"+leader.s.HTTPAddr())

	b.open("/topics", "#register-form")
	b.follow(`#header nav a[href="/cluster"]`, "#cluster-members")
	b.waitJS("the Cluster link marked active", `document.querySelector('#header nav a.active').getAttribute('href') === '/cluster'`)
	if got := b.text("#cluster-id"); got != "dmq" {
		t.Errorf("cluster id on the page = %q, want dmq (the default)", got)
	}
	b.waitText("#cluster-this-node", leader.id)
	if got := b.text("#cluster-this-node"); !strings.Contains(got, "Leader") {
		t.Errorf("this node on the leader's page = %q, want %s marked Leader", got, leader.id)
	}
	if got := b.text("#cluster-leader"); !strings.Contains(got, leader.id) || !strings.Contains(got, leader.s.HTTPAddr()) {
		t.Errorf("leader on the page = %q, want %s at HTTP %s", got, leader.id, leader.s.HTTPAddr())
	}
	if eval[bool](b, `!!document.querySelector('#cluster-not-leader')`) {
		t.Errorf("the leader's page says this node does not lead")
	}
	rows := b.waitMembers("three members, the leader marked, all healthy and reachable with the applied index each reports itself and lag 0", func(rows []memberRow) bool {
		if len(rows) != 3 {
			return false
		}
		own := ownApplied(members)
		for _, r := range rows {
			if (r.Role == "leader") != (r.ID == leader.id) || (r.State == "Leader") != (r.ID == leader.id) {
				return false
			}
			if r.Healthy != "true" || r.Reachable != "true" || r.Lag != "0" || !appliedAsOwn(r.Applied, own, r.ID, 0) {
				return false
			}
		}
		return true
	})
	var got []string
	for _, r := range rows {
		got = append(got, r.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("members on the page = %v, want %v", got, ids)
	}
	st, err := clusterStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	if l := rowOf(rows, leader.id); l.Term != fmt.Sprint(st.Groups[0].Term) {
		t.Errorf("leader's term on the page = %q, its API says %d", l.Term, st.Groups[0].Term)
	}
	b.screenshot("cluster")

	// Stop the leader; another node takes over and serves the console.
	b.do("leave the old leader's page", chromedp.Navigate("about:blank"))
	leader.s.Stop(t)
	old := leader
	leader = waitClusterLeader(t, members, old)
	b.base = "http://" + leader.s.HTTPAddr()
	b.open("/cluster", "#cluster-members")
	b.waitText("#cluster-this-node", leader.id)
	if got := b.text("#cluster-this-node"); !strings.Contains(got, "Leader") {
		t.Errorf("this node on the new leader's page = %q, want %s marked Leader", got, leader.id)
	}
	b.waitText("#cluster-leader", leader.id)
	rows = b.waitMembers(fmt.Sprintf("%s leading and %s unhealthy and unreachable with an error", leader.id, old.id), func(rows []memberRow) bool {
		if len(rows) != 3 {
			return false
		}
		for _, r := range rows {
			if (r.Role == "leader") != (r.ID == leader.id) {
				return false
			}
		}
		o := rowOf(rows, old.id)
		l := rowOf(rows, leader.id)
		return o.Healthy == "false" && o.Reachable == "false" && o.ReachErr != "" && l.Healthy == "true" && l.Reachable == "true" && l.Lag == "0"
	})
	for _, r := range rows {
		if r.ID != old.id && r.ID != leader.id && (r.Healthy != "true" || r.Reachable != "true") {
			t.Errorf("the remaining follower %s shows healthy %q and reachable %q, want true and true", r.ID, r.Healthy, r.Reachable)
		}
	}
	if o := rowOf(rows, old.id); o.Applied == "unknown" {
		t.Errorf("the stopped node %s's applied index on the page = %q, want the last one it told", old.id, o.Applied)
	}
	b.screenshot("cluster-failover")

	// The page in Chinese (a missing label would be a console error).
	b.click("#lang-toggle")
	b.waitText("#cluster-this-node", "主节点")
	b.waitText("h1", "集群")
}

// shardRow is a row of the Cluster page's shards table: the shard, its leader
// ("" while none is known), and each node's role in it, applied index, lag
// and whether it is marked unreachable.
type shardRow struct {
	Shard  string `json:"shard"`
	Leader string `json:"leader"`
	Nodes  map[string]struct {
		Role        string `json:"role"`    // leader or follower
		Applied     string `json:"applied"` // a number or unknown
		Lag         string `json:"lag"`     // a number or unknown
		Unreachable bool   `json:"unreachable"`
	} `json:"nodes"`
}

const shardsJS = `[...document.querySelectorAll('#cluster-shards tbody tr')].map((tr) => {
  const shard = tr.querySelector('[data-shard]');
  const leader = tr.querySelector('[data-col="leader"]');
  const nodes = {};
  for (const n of tr.querySelectorAll('[data-node]')) {
    const role = n.querySelector('[data-node-role]');
    const col = (c) => { const e = n.querySelector('[data-col="' + c + '"]'); return !e ? '' : e.hasAttribute('data-unknown') ? 'unknown' : e.textContent; };
    nodes[n.dataset.node] = { role: role ? role.dataset.nodeRole : '', applied: col('applied'), lag: col('lag'),
      unreachable: !!n.querySelector('[data-reachable="false"]') };
  }
  return { shard: shard ? shard.textContent : '', leader: leader && !leader.hasAttribute('data-unknown') ? leader.textContent : '', nodes };
})`

// waitShards waits until the shards table satisfies ok.
func (b *browser) waitShards(what string, timeout time.Duration, ok func([]shardRow) bool) []shardRow {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rows := eval[[]shardRow](b, shardsJS)
		if ok(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waiting for the shards table to show %s: it shows %+v", what, rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shardsLedBy reports whether the shards table shows shard i led by
// leaders[i], every node's role in it accordingly, and an applied index and
// a lag for every node.
func shardsLedBy(rows []shardRow, leaders []string) bool {
	if len(rows) != len(leaders) {
		return false
	}
	for i, r := range rows {
		if r.Shard != fmt.Sprintf("s%d", i) || r.Leader != leaders[i] || len(r.Nodes) != 3 {
			return false
		}
		for id, n := range r.Nodes {
			if (n.Role == "leader") != (id == leaders[i]) || n.Applied == "unknown" || n.Applied == "" || n.Lag == "unknown" || n.Lag == "" {
				return false
			}
		}
	}
	return true
}

// The Cluster page of a cluster of three nodes and three shards, opened on a
// node that does not lead s0 (it serves the page itself, passing the console's
// requests on): the shards table shows each shard led by its preferred node
// (shard i by the i-th node), each node's role in each shard and every
// node's applied index in each as that node reports it itself, with lag 0
// (measured, in the shards this node follows, against its commit index, as
// the page says); each member leads one shard. When s2's leader stops,
// another node takes s2 and the page points out that it leads two shards,
// and the stopped node is unhealthy and marked unreachable in every shard.
func TestConsoleClusterPageShowsShardLeaders(t *testing.T) {
	members, _ := startConsoleCluster(t, 3, 3)
	ids := []string{"n1", "n2", "n3"}
	dmqtest.Eventually(t, 60*time.Second, "shards s0, s1, s2 led by n1, n2, n3 in every node's view", func() bool {
		for _, m := range members {
			st, err := clusterStatus(m)
			if err != nil || len(st.Groups) != 3 {
				return false
			}
			for i, g := range st.Groups {
				if g.Name != fmt.Sprintf("s%d", i) || g.Leader.ID != ids[i] || (g.Role == "leader") != (m.id == ids[i]) {
					return false
				}
			}
		}
		return true
	})
	self := members[1]
	b := newBrowser(t, "http://"+self.s.HTTPAddr())
	b.open("/cluster", "#cluster-shards")
	b.waitShards("s0, s1, s2 led by n1, n2, n3, each node's applied index in each shard as it reports it itself, lag 0", stepTimeout, func(rows []shardRow) bool {
		if !shardsLedBy(rows, ids) {
			return false
		}
		own := ownApplied(members)
		for i, r := range rows {
			for id, n := range r.Nodes {
				if n.Unreachable || n.Lag != "0" || !appliedAsOwn(n.Applied, own, id, i) {
					return false
				}
			}
		}
		return true
	})
	// In s0 and s2 this node follows: the page says what its lags are measured against.
	if got := eval[int](b, `document.querySelectorAll('#cluster-shards [data-commit-here]').length`); got != 2 {
		t.Errorf("shards whose commit index is marked as this node's = %d, want 2 (s0 and s2, which %s follows)", got, self.id)
	}
	if got := b.text("#cluster-lag-basis"); !strings.Contains(got, "does not lead s0") {
		t.Errorf("the note under the members table = %q, want it to say %s does not lead s0 (lags against its commit index)", got, self.id)
	}
	if got := b.text("#cluster-this-node"); !strings.Contains(got, self.id) || !strings.Contains(got, "Leader s1") || strings.Contains(got, "s0") {
		t.Errorf("this node on the page = %q, want %s marked leader of s1 only", got, self.id)
	}
	if got := b.text("#cluster-leader"); !strings.Contains(got, "n1") {
		t.Errorf("s0's leader on the page = %q, want n1", got)
	}
	if got := b.text("#cluster-shard-count"); got != "3" {
		t.Errorf("number of shards on the page = %q, want 3", got)
	}
	if eval[bool](b, `!!document.querySelector('#cluster-not-leader, [data-leads-several]')`) {
		t.Errorf("the page of a balanced cluster says this node does not lead, or that a node leads several shards: %.600s", b.text("#cluster-body"))
	}
	b.waitMembers("three members, each a leader (of one shard), all healthy", func(rows []memberRow) bool {
		if len(rows) != 3 {
			return false
		}
		for _, r := range rows {
			if r.Role != "leader" || r.Healthy != "true" {
				return false
			}
		}
		return true
	})
	b.screenshot("cluster-shards")

	// n3 stops: another node takes s2 and leads two shards.
	members[2].s.Stop(t)
	var took string
	b.waitShards("s2 led by n1 or n2, s0 and s1 still by n1 and n2", 30*time.Second, func(rows []shardRow) bool {
		for _, l := range []string{"n1", "n2"} {
			if shardsLedBy(rows, []string{"n1", "n2", l}) {
				took = l
				return true
			}
		}
		return false
	})
	b.waitJS(took+" pointed out as leading two shards", fmt.Sprintf(`[...document.querySelectorAll('[data-leads-several]')].map((e) => e.dataset.leadsSeveral).join() === %s`, js(took)))
	if got := b.text("[data-leads-several]"); !strings.Contains(got, took+" leads 2 of the 3 shards") {
		t.Errorf("the note on a node leading several shards = %q, want it to say %s leads 2 of the 3", got, took)
	}
	b.waitMembers("n3 unhealthy, unreachable with an error, and a follower", func(rows []memberRow) bool {
		n3 := rowOf(rows, "n3")
		return len(rows) == 3 && n3.Role == "follower" && n3.Healthy == "false" && n3.Reachable == "false" && n3.ReachErr != ""
	})
	b.waitShards("n3 marked unreachable in every shard, n1 and n2 not", stepTimeout, func(rows []shardRow) bool {
		for _, r := range rows {
			if !r.Nodes["n3"].Unreachable || r.Nodes["n1"].Unreachable || r.Nodes["n2"].Unreachable {
				return false
			}
		}
		return len(rows) == 3
	})
	b.screenshot("cluster-shards-failover")

	// The page in Chinese (a missing label would be a console error).
	b.click("#lang-toggle")
	b.waitText("#cluster-this-node", "s1 主节点")
	b.waitText("#cluster-body h2", "分片")
}

// On a single node the cluster endpoint does not exist (404): the page says
// the broker runs as a single node.
func TestConsoleClusterPageOnSingleNode(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	b := newBrowser(t, "http://"+s.HTTPAddr())
	b.open("/cluster", "#cluster-single")
	b.waitText("#cluster-single", "runs as a single node (no cluster)")
	if eval[bool](b, `!!document.querySelector('#cluster-members, #cluster-error')`) {
		t.Errorf("the single node's Cluster page shows a members table or an error: %.300s", b.text("main"))
	}
	b.screenshot("cluster-single")
}
