package browser_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
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

// startConsoleCluster runs n cluster nodes in this process (gRPC and HTTP on
// 127.0.0.1:0, Raft on free loopback ports), each stopped at the end of the
// test, and waits until one of them leads and serves clients.
func startConsoleCluster(t *testing.T, n int) ([]*clusterMember, *clusterMember) {
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
			c.NodeID, c.Peers, c.ClusterListen = m.id, strings.Join(peers, ","), raft[i]
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
	ID      string `json:"id"`
	Role    string `json:"role"`    // leader or follower
	Healthy string `json:"healthy"` // true, false or unknown
	Term    string `json:"term"`
	Applied string `json:"applied"`
	Lag     string `json:"lag"`
}

// membersJS reads the members table; cells without a value read "unknown".
const membersJS = `[...document.querySelectorAll('#cluster-members tbody tr')].map((tr) => {
  const col = (c) => { const e = tr.querySelector('[data-col="' + c + '"]'); return !e ? '' : e.hasAttribute('data-unknown') ? 'unknown' : (e.dataset.healthy || e.textContent); };
  const id = tr.querySelector('[data-member]');
  const role = tr.querySelector('[data-node-role]');
  return { id: id ? id.textContent : '', role: role ? role.dataset.nodeRole : '', healthy: col('healthy'), term: col('term'), applied: col('applied'), lag: col('lag') };
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
// leader marked, the followers healthy in the leader's view and the
// leader's own positions with no lag (the console reads only the node that
// serves it: the followers' positions are unknown). After the leader stops,
// the page served by the new leader names the new leader, and the stopped
// node is unhealthy with unknown positions.
func TestConsoleClusterPageShowsMembersAndFollowsFailover(t *testing.T) {
	members, leader := startConsoleCluster(t, 3)
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
	rows := b.waitMembers("three members, the leader marked, followers healthy with unknown positions, the leader without lag", func(rows []memberRow) bool {
		if len(rows) != 3 {
			return false
		}
		for _, r := range rows {
			if (r.Role == "leader") != (r.ID == leader.id) {
				return false
			}
			if r.ID != leader.id && (r.Healthy != "true" || r.Applied != "unknown" || r.Lag != "unknown") {
				return false
			}
		}
		l := rowOf(rows, leader.id)
		return l.Healthy == "true" && l.Lag == "0" && l.Term != "unknown" && l.Applied != "unknown"
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
	rows = b.waitMembers(fmt.Sprintf("%s leading and %s unhealthy with unknown positions", leader.id, old.id), func(rows []memberRow) bool {
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
		return o.Healthy == "false" && o.Applied == "unknown" && o.Lag == "unknown" && l.Healthy == "true" && l.Lag == "0"
	})
	for _, r := range rows {
		if r.ID != old.id && r.ID != leader.id && r.Healthy != "true" {
			t.Errorf("the remaining follower %s shows healthy %q, want true", r.ID, r.Healthy)
		}
	}
	b.screenshot("cluster-failover")

	// The page in Chinese (a missing label would be a console error).
	b.click("#lang-toggle")
	b.waitText("#cluster-this-node", "主节点")
	b.waitText("h1", "集群")
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
