package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/server"
)

var testMembers = []cluster.Server{{ID: "n1", Addr: "10.0.0.1:7431", Voter: true}, {ID: "n2", Addr: "10.0.0.2:7431", Voter: true}, {ID: "n3", Addr: "10.0.0.3:7431", Voter: true}}

// testStatus is node's answer in a cluster where leaders[i] leads shard i, with its
// shard i at applied[i] (its commit index too; the leader's last log one ahead).
func testStatus(node string, leaders []string, applied []uint64) server.Status {
	st := server.Status{NodeID: node, ClusterID: "dmq"}
	for i, l := range leaders {
		g := server.GroupStatus{
			Name: "s" + string(rune('0'+i)), Role: "follower", Leader: meta.Node{ID: l}, State: "Follower", Term: 2,
			LastLogIndex: applied[i], CommitIndex: applied[i], AppliedIndex: applied[i], Servers: testMembers,
		}
		if l == node {
			g.Role, g.State, g.LastLogIndex = "leader", "Leader", applied[i]+1
		}
		st.Groups = append(st.Groups, g)
	}
	st.Role, st.Leader = st.Groups[0].Role, st.Groups[0].Leader
	return st
}

// The status table of a cluster of one shard keeps the layout it had before shards
// (no shard column, no line per shard), and the words " leader " and " follower "
// appear once per node, in the ROLE column, as test/cluster counts them.
func TestClusterStatusOfOneShardIsOneRowPerNode(t *testing.T) {
	views := []nodeView{
		{addr: "h1:7480", st: testStatus("n1", []string{"n1"}, []uint64{15})},
		{addr: "h2:7480", st: testStatus("n2", []string{"n1"}, []uint64{12})},
		{addr: "h3:7480", st: testStatus("n3", []string{"n1"}, []uint64{15})},
	}
	var out bytes.Buffer
	if err := printClusterStatus(&out, views); err != nil {
		t.Fatalf("printClusterStatus: %v", err)
	}
	want := `NODE  HTTP     ROLE      STATE     TERM  LAST LOG  COMMIT  APPLIED  LAG  LEADER
n1    h1:7480  leader    Leader    2     16        15      15       0    n1
n2    h2:7480  follower  Follower  2     12        12      12       3    n1
n3    h3:7480  follower  Follower  2     15        15      15       0    n1
members: n1=10.0.0.1:7431, n2=10.0.0.2:7431, n3=10.0.0.3:7431
`
	if out.String() != want {
		t.Errorf("status of one shard:\n%s\nwant:\n%s", out.String(), want)
	}
	if l, f := strings.Count(out.String(), " leader "), strings.Count(out.String(), " follower "); l != 1 || f != 2 {
		t.Errorf("status of one shard has %d \" leader \" and %d \" follower \", want 1 and 2 (test/cluster counts them)", l, f)
	}

	// The leader unreachable: no lag, and the line saying no leader was asked.
	views[0] = nodeView{addr: "h1:7480", err: errors.New("connection refused")}
	out.Reset()
	if err := printClusterStatus(&out, views); err != nil {
		t.Fatalf("printClusterStatus: %v", err)
	}
	want = `NODE  HTTP     ROLE         STATE     TERM  LAST LOG  COMMIT  APPLIED  LAG  LEADER
?     h1:7480  unreachable  -         -     -         -       -        -    connection refused
n2    h2:7480  follower     Follower  2     12        12      12       -    n1
n3    h3:7480  follower     Follower  2     15        15      15       -    n1
members: n1=10.0.0.1:7431, n2=10.0.0.2:7431, n3=10.0.0.3:7431
no leader among the nodes asked (an election in progress, or the leader was not asked)
`
	if out.String() != want {
		t.Errorf("status of one shard without its leader:\n%s\nwant:\n%s", out.String(), want)
	}
}

// With three shards: a row per node and shard, each row's lag measured against its
// own shard's leader, a line naming each shard's leader, and a note on a node that
// leads more than one shard; " leader " once per shard.
func TestClusterStatusOfThreeShardsShowsEveryShardsLeader(t *testing.T) {
	leaders := []string{"n1", "n2", "n1"} // n3 has just restarted: s2 has not gone home yet
	views := []nodeView{
		{addr: "h1:7480", st: testStatus("n1", leaders, []uint64{15, 9, 30})},
		{addr: "h2:7480", st: testStatus("n2", leaders, []uint64{15, 9, 28})},
		{addr: "h3:7480", st: testStatus("n3", leaders, []uint64{10, 9, 20})},
	}
	var out bytes.Buffer
	if err := printClusterStatus(&out, views); err != nil {
		t.Fatalf("printClusterStatus: %v", err)
	}
	want := `NODE  HTTP     SHARD  ROLE      STATE     TERM  LAST LOG  COMMIT  APPLIED  LAG  LEADER
n1    h1:7480  s0     leader    Leader    2     16        15      15       0    n1
n1    h1:7480  s1     follower  Follower  2     9         9       9        0    n2
n1    h1:7480  s2     leader    Leader    2     31        30      30       0    n1
n2    h2:7480  s0     follower  Follower  2     15        15      15       0    n1
n2    h2:7480  s1     leader    Leader    2     10        9       9        0    n2
n2    h2:7480  s2     follower  Follower  2     28        28      28       2    n1
n3    h3:7480  s0     follower  Follower  2     10        10      10       5    n1
n3    h3:7480  s1     follower  Follower  2     9         9       9        0    n2
n3    h3:7480  s2     follower  Follower  2     20        20      20       10   n1
s0 led by n1
s1 led by n2
s2 led by n1
n1 leads 2 of the 3 shards: s0, s2
members: n1=10.0.0.1:7431, n2=10.0.0.2:7431, n3=10.0.0.3:7431
`
	if out.String() != want {
		t.Errorf("status of three shards:\n%s\nwant:\n%s", out.String(), want)
	}
	if n := strings.Count(out.String(), " leader "); n != 3 {
		t.Errorf("status of three shards has %d \" leader \", want 3 (one per shard)", n)
	}

	// s1's leader unreachable, s2 in an election, a replica broken, and s2's
	// membership not changed with the others'.
	views[1] = nodeView{addr: "h2:7480", err: errors.New("connection refused")}
	n1 := &views[0].st
	n1.Groups[2].Role, n1.Groups[2].State, n1.Groups[2].Leader = "follower", "Candidate", meta.Node{}
	views[2].st.Groups[2].Leader = meta.Node{}
	n1.Groups[2].Servers = testMembers[:2]
	views[2].st.ReplicaError = "shard s1: entry 9: checksum mismatch"
	out.Reset()
	if err := printClusterStatus(&out, views); err != nil {
		t.Fatalf("printClusterStatus: %v", err)
	}
	for _, line := range []string{
		"?     h2:7480  -      unreachable  -          -     -         -       -        -    connection refused\n",
		"n1    h1:7480  s2     follower     Candidate  2     31        30      30       -    -\n",
		"s0 led by n1\n",
		"s1 is not served by any node asked (n2 was elected: it was not asked, or is not serving yet)\n",
		"s2 has no elected leader (an election in progress)\n",
		"n3 cannot apply the log and will not lead until replaced: shard s1: entry 9: checksum mismatch\n",
		"members of s2 differ: n1=10.0.0.1:7431, n2=10.0.0.2:7431\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("status without s1's leader, s2 in an election:\n%s\nwant a line %q", out.String(), line)
		}
	}
	if strings.Contains(out.String(), "leads 2") || strings.Contains(out.String(), "no leader among") {
		t.Errorf("status without s1's leader, s2 in an election:\n%s\nsays a node leads several shards, or the one-shard line", out.String())
	}
}

// fakeNode answers GET /api/v1/cluster with st and records the transfer requests.
type fakeNode struct {
	st server.Status
	mu struct {
		sync.Mutex
		transfers []string // shard and to of each POST /api/v1/cluster/leader
	}
}

func (n *fakeNode) transfers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.transfers
}

func (n *fakeNode) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.transfers = nil
}

func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/cluster":
		json.NewEncoder(w).Encode(n.st)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/cluster/leader":
		body, _ := io.ReadAll(r.Body)
		var req struct{ To string }
		json.Unmarshal(body, &req)
		n.mu.Lock()
		n.mu.transfers = append(n.mu.transfers, r.URL.Query().Get("shard")+" "+req.To)
		n.mu.Unlock()
		if r.URL.Query().Get("shard") == "s9" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": `shard="s9" names no shard of this cluster (it has 3)`})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"transferred": true})
	default:
		http.NotFound(w, r)
	}
}

// clusterRun runs `dmq cluster ARGS --http nodes`.
func clusterRun(t *testing.T, nodes []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(append(append([]string{"cluster"}, args...), "--http", strings.Join(nodes, ",")), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// The commands against nodes over HTTP: status asks each node named, and
// transfer-leader names the shard (s0 unless --shard says otherwise) in the query.
func TestClusterCommandsOverHTTP(t *testing.T) {
	leaders := []string{"n1", "n2", "n3"}
	var fakes []*fakeNode
	var addrs []string
	for _, id := range leaders {
		f := &fakeNode{st: testStatus(id, leaders, []uint64{5, 6, 7})}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		fakes = append(fakes, f)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	nodes := append([]string{strings.TrimPrefix(gone.URL, "http://")}, addrs...)

	out, errOut, code := clusterRun(t, nodes, "status")
	if code != 0 {
		t.Fatalf("dmq cluster status: exit %d, stderr %s", code, errOut)
	}
	if rows := strings.Count(out, "\nn"); rows != 9 || !strings.Contains(out, "unreachable") {
		t.Errorf("dmq cluster status of 3 nodes (one more unreachable) × 3 shards printed %d node rows, want 9 and an unreachable one:\n%s", rows, out)
	}
	for _, line := range []string{"s0 led by n1\n", "s1 led by n2\n", "s2 led by n3\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("dmq cluster status:\n%s\nwant a line %q", out, line)
		}
	}

	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"default shard, any node", "s0 ", []string{"transfer-leader"}},
		{"named shard and node", "s2 n1", []string{"transfer-leader", "n1", "--shard", "s2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakes[0].reset()
			out, errOut, code := clusterRun(t, addrs, tc.args...)
			if code != 0 {
				t.Fatalf("dmq cluster %v: exit %d, stderr %s", tc.args, code, errOut)
			}
			if len(fakes[0].transfers()) != 1 || fakes[0].transfers()[0] != tc.want {
				t.Errorf("dmq cluster %v sent %q (shard, to), want [%q]", tc.args, fakes[0].transfers(), tc.want)
			}
			if !strings.HasPrefix(out, "leadership of "+strings.Fields(tc.want)[0]+" transferred") {
				t.Errorf("dmq cluster %v printed %q", tc.args, out)
			}
		})
	}

	// A name that is no shard's is refused before anything is sent; one the cluster
	// does not have, by the node, whose answer is not tried on the others.
	fakes[0].reset()
	if _, errOut, code := clusterRun(t, addrs, "transfer-leader", "--shard", "2"); code == 0 || !strings.Contains(errOut, `"2" is not a shard name`) || len(fakes[0].transfers()) != 0 {
		t.Errorf("transfer-leader --shard 2: exit %d, stderr %q, sent %q; want a refusal naming the flag, nothing sent", code, errOut, fakes[0].transfers())
	}
	if _, errOut, code := clusterRun(t, addrs, "transfer-leader", "--shard", "s9"); code == 0 || !strings.Contains(errOut, "names no shard") || len(fakes[1].transfers()) != 0 {
		t.Errorf("transfer-leader --shard s9: exit %d, stderr %q, second node asked %q; want the first node's refusal only", code, errOut, fakes[1].transfers())
	}
}
