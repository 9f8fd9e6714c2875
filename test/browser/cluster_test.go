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
	return startConsoleClusterReplicas(t, n, shards, 0)
}

// startConsoleClusterReplicas is startConsoleCluster with each shard but s0
// kept by replicas of the nodes (--replicas; 0 is every node).
func startConsoleClusterReplicas(t *testing.T, n, shards, replicas int) ([]*clusterMember, *clusterMember) {
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
			c.NodeID, c.Peers, c.ClusterListen, c.Shards, c.Replicas = m.id, strings.Join(peers, ","), raft[i], shards, replicas
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

// shardRow is a row of the Cluster page's shards table: the shard, whether
// it is one this node keeps no replica of (shown as its leader told), its
// leader ("" while none is known), its commit index and the note under it,
// and each node's role in it, applied index, lag and whether it is marked
// unreachable, whether it keeps a replica and whether that is catching up.
type shardRow struct {
	Shard      string `json:"shard"`
	Elsewhere  bool   `json:"elsewhere"`
	Leader     string `json:"leader"`
	Commit     string `json:"commit"`
	CommitNote string `json:"commitNote"`
	Nodes      map[string]struct {
		Role        string `json:"role"`    // leader or follower
		Applied     string `json:"applied"` // a number or unknown
		Lag         string `json:"lag"`     // a number or unknown
		Unreachable bool   `json:"unreachable"`
		Placed      string `json:"placed"` // true, false (the node keeps no replica) or unknown
		Text        string `json:"text"`
		CatchingUp  bool   `json:"catchingUp"`
	} `json:"nodes"`
}

const shardsJS = `[...document.querySelectorAll('#cluster-shards tbody tr')].map((tr) => {
  const shard = tr.querySelector('[data-shard]');
  const leader = tr.querySelector('[data-col="leader"]');
  const commit = tr.querySelector('[data-col="commit"]');
  const note = tr.querySelector('[data-commit-here], [data-commit-elsewhere]');
  const nodes = {};
  for (const n of tr.querySelectorAll('[data-node]')) {
    const role = n.querySelector('[data-node-role]');
    const col = (c) => { const e = n.querySelector('[data-col="' + c + '"]'); return !e ? '' : e.hasAttribute('data-unknown') ? 'unknown' : e.textContent; };
    nodes[n.dataset.node] = { role: role ? role.dataset.nodeRole : '', applied: col('applied'), lag: col('lag'),
      unreachable: !!n.querySelector('[data-reachable="false"]'), placed: n.dataset.placed || '', text: n.textContent.trim(),
      catchingUp: !!n.querySelector('[data-catching-up]') };
  }
  return { shard: shard ? shard.textContent : '', elsewhere: !!tr.querySelector('[data-elsewhere]'),
    leader: leader && !leader.hasAttribute('data-unknown') ? leader.textContent : '',
    commit: commit && !commit.hasAttribute('data-unknown') ? commit.textContent : '', commitNote: note ? note.textContent : '', nodes };
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

// placedOn is shard i's nodes in a cluster of the nodes ids (in id order)
// where each shard but s0 is kept by replicas of them: the replicas that
// follow the i-th, wrapping around (shard.Placement); s0 on every node.
func placedOn(i int, ids []string, replicas int) []string {
	if i == 0 {
		return slices.Clone(ids)
	}
	var out []string
	for k := range replicas {
		out = append(out, ids[(i+k)%len(ids)])
	}
	slices.Sort(out)
	return out
}

// placedAsTold reports why st, a node's status, does not yet show every
// shard led by its preferred node (the first of its placement: shard i by
// the i-th node) with exactly its placed nodes as voting members, the
// shards the node keeps in groups and the others in elsewhere ("" once it
// does).
func placedAsTold(st server.Status, ids []string, shards, replicas int) string {
	var kept []string
	all := map[string]server.GroupStatus{}
	for _, g := range st.Groups {
		kept = append(kept, g.Name)
		all[g.Name] = g
	}
	for _, g := range st.Elsewhere {
		all[g.Name] = g
	}
	var want []string
	for i := range shards {
		name := fmt.Sprintf("s%d", i)
		placed := placedOn(i, ids, replicas)
		if slices.Contains(placed, st.NodeID) {
			want = append(want, name)
		}
		g, ok := all[name]
		if !ok {
			return fmt.Sprintf("%s: %s is neither in groups nor elsewhere", st.NodeID, name)
		}
		if g.Leader.ID != ids[i%len(ids)] {
			return fmt.Sprintf("%s: %s is led by %q, want %s", st.NodeID, name, g.Leader.ID, ids[i%len(ids)])
		}
		var voters []string
		for _, srv := range g.Servers {
			if srv.Voter {
				voters = append(voters, srv.ID)
			}
		}
		slices.Sort(voters)
		if len(g.Servers) != len(placed) || !slices.Equal(voters, placed) {
			return fmt.Sprintf("%s: %s's members are %+v, want voters %v", st.NodeID, name, g.Servers, placed)
		}
	}
	if !slices.Equal(kept, want) {
		return fmt.Sprintf("%s keeps %v, want %v", st.NodeID, kept, want)
	}
	return ""
}

// The Cluster page of four nodes and four shards, each shard but s0 kept by
// three of them (--replicas 3: s1 on n2 n3 n4, s2 on n3 n4 n1, s3 on n4 n1
// n2), opened on n1, which keeps no replica of s1: its status has s1 only
// in elsewhere, as s1's leader told it. Once each shard is led by its
// preferred node, the shards table still lists all four shards in order; in
// s1's row n1's cell says it keeps no replica ("—") and the commit index is
// the leader's, marked as its leader told; in every row the nodes that keep
// the shard show their role, applied index and lag, the others "—". The
// overview says each shard is on 3 of the 4 nodes, and counts 4 shards.
// Then, with the status doctored in the page (a member of s2 not a voter
// yet, no leader of s1 known to n1): the member is marked as catching up,
// and s1's row says its leader and members are not known.
func TestConsoleClusterPageShowsShardsKeptElsewhere(t *testing.T) {
	const shards, replicas = 4, 3
	members, _ := startConsoleClusterReplicas(t, 4, shards, replicas)
	ids := []string{"n1", "n2", "n3", "n4"}
	var why string
	defer func() {
		if t.Failed() && why != "" {
			t.Logf("last difference: %s", why)
		}
	}()
	dmqtest.Eventually(t, 90*time.Second, "every shard led, its placed nodes voting members, in every node's view", func() bool {
		for _, m := range members {
			st, err := clusterStatus(m)
			if err != nil {
				why = fmt.Sprintf("%s: %v", m.id, err)
				return false
			}
			if why = placedAsTold(st, ids, shards, replicas); why != "" {
				return false
			}
		}
		return true
	})
	self := members[0]
	st, err := clusterStatus(self)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Elsewhere) != 1 || st.Elsewhere[0].Name != "s1" {
		t.Fatalf("%s's status has elsewhere %+v, want s1 alone (the test needs a shard it does not keep)", self.id, st.Elsewhere)
	}

	b := newBrowser(t, "http://"+self.s.HTTPAddr())
	b.open("/cluster", "#cluster-shards")
	rows := b.waitShards("s0..s3 led by n1..n4, the placed nodes with a replica (an applied index and a lag) and the others —", stepTimeout, func(rows []shardRow) bool {
		if len(rows) != shards {
			return false
		}
		for i, r := range rows {
			placed := placedOn(i, ids, replicas)
			if r.Shard != fmt.Sprintf("s%d", i) || r.Leader != ids[i] || r.Elsewhere != (i == 1) || len(r.Nodes) != len(ids) {
				return false
			}
			for _, id := range ids {
				n := r.Nodes[id]
				if slices.Contains(placed, id) {
					if n.Placed != "true" || n.CatchingUp || n.Unreachable || n.Applied == "" || n.Applied == "unknown" || n.Lag == "" || n.Lag == "unknown" ||
						(n.Role == "leader") != (id == r.Leader) {
						return false
					}
				} else if n.Placed != "false" || n.Text != "—" || n.Role != "" {
					return false
				}
			}
		}
		return true
	})
	s1 := rows[1]
	if n, ok := shownNum(s1.Commit); !ok || n == 0 || !strings.Contains(s1.CommitNote, "as its leader told") {
		t.Errorf("s1's commit index on the page = %q with the note %q, want the leader's applied index marked as its leader told", s1.Commit, s1.CommitNote)
	}
	if got := eval[string](b, `document.querySelector('#cluster-shards tr:has([data-shard="s1"]) [data-node="n1"]').getAttribute('data-placed')`); got != "false" {
		t.Errorf("n1's cell in s1's row has data-placed=%q, want false", got)
	}
	if got := eval[string](b, `document.querySelector('#cluster-shards tr:has([data-shard="s1"]) [data-node="n2"]').getAttribute('data-placed')`); got != "true" {
		t.Errorf("n2's cell in s1's row has data-placed=%q, want true", got)
	}
	if got := eval[int](b, `document.querySelectorAll('#cluster-shards [data-elsewhere]').length`); got != 1 {
		t.Errorf("shards marked as kept elsewhere = %d, want 1 (s1)", got)
	}
	if got := b.text("#cluster-replicas"); !strings.Contains(got, "3 of 4 nodes") {
		t.Errorf("replicas per shard on the page = %q, want 3 of 4 nodes", got)
	}
	if got := b.text("#cluster-shard-count"); got != "4" {
		t.Errorf("number of shards on the page = %q, want 4 (n1 keeps 3 of them)", got)
	}
	if got := b.text("#cluster-this-node"); !strings.Contains(got, "Leader s0") || strings.Contains(got, "s1") {
		t.Errorf("this node on the page = %q, want n1 marked leader of s0 only", got)
	}
	if eval[bool](b, `!!document.querySelector('[data-leads-several]')`) {
		t.Errorf("the page of a balanced cluster says a node leads several shards: %.600s", b.text("#cluster-body"))
	}
	b.waitMembers("four members, all healthy", func(rows []memberRow) bool {
		if len(rows) != 4 {
			return false
		}
		for _, r := range rows {
			if r.Healthy != "true" || r.Reachable != "true" {
				return false
			}
		}
		return true
	})
	b.screenshot("cluster-replicas")

	// The same page from a doctored status: in s2 (which n1 keeps) n3 is not
	// a voter yet, and n1 was told no leader of s1.
	b.do("doctor the cluster status", chromedp.Evaluate[chromedp.Void](`(() => {
  const real = window.fetch;
  window.fetch = async (url, init) => {
    const resp = await real(url, init);
    if (!String(url).endsWith('/api/v1/cluster')) return resp;
    const st = await resp.json();
    for (const srv of st.groups.find((g) => g.name === 's2').servers) if (srv.ID === 'n3') srv.Voter = false;
    st.elsewhere = st.elsewhere.map((g) => ({ name: g.name, role: g.role }));
    return new Response(JSON.stringify(st), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
})()`))
	b.click("#cluster-refresh")
	rows = b.waitShards("n3 catching up in s2, s1 without a leader or members", stepTimeout, func(rows []shardRow) bool {
		if len(rows) != shards || rows[1].Shard != "s1" || rows[1].Leader != "" || rows[1].Commit != "" || !rows[1].Elsewhere || !rows[2].Nodes["n3"].CatchingUp {
			return false
		}
		for _, id := range ids {
			if rows[1].Nodes[id].Placed != "unknown" || rows[2].Nodes[id].CatchingUp != (id == "n3") {
				return false
			}
		}
		return true
	})
	if got := b.text("#cluster-shards [data-catching-up]"); got != "catching up" {
		t.Errorf("the badge of a member not voting yet = %q, want catching up", got)
	}
	b.screenshot("cluster-replicas-doctored")
	b.do("undo the doctoring", chromedp.Navigate("about:blank"))
	b.open("/cluster", "#cluster-shards")
	b.waitShards("s1 led by n2 again", stepTimeout, func(rows []shardRow) bool { return len(rows) == shards && rows[1].Leader == "n2" })

	// The page in Chinese (a missing label would be a console error).
	b.click("#lang-toggle")
	b.waitText("#cluster-replicas", "4 个节点中的 3 个")
	b.waitText("#cluster-shards [data-commit-elsewhere]", "其主节点所告知")
}

// On a single node the cluster endpoint does not exist (404): the page says
// the broker runs as a single node. A one-voter cluster (dmqtest.OneVoter) lists
// itself, the one member.
func TestConsoleClusterPageOnSingleNode(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	b := newBrowser(t, "http://"+s.HTTPAddr())
	if dmqtest.OneVoter() {
		b.open("/cluster", "#cluster-members")
		b.waitText("#cluster-members tbody tr", "n1")
		return
	}
	b.open("/cluster", "#cluster-single")
	b.waitText("#cluster-single", "runs as a single node (no cluster)")
	if eval[bool](b, `!!document.querySelector('#cluster-members, #cluster-error')`) {
		t.Errorf("the single node's Cluster page shows a members table or an error: %.300s", b.text("main"))
	}
	b.screenshot("cluster-single")
}
