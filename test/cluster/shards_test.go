package cluster_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/shard"
	"github.com/dmqio/dmq/internal/testcert"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// balanceWait is longer than the balancer takes to move a shard (its settle time and
// interval).
const balanceWait = 9 * time.Second

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

// shardLoad is one topic per shard, each with a group g whose consumer records what it
// receives in the topic's own ledger.
type shardLoad struct {
	topics  []string
	ledgers []*ledger
}

func newShardLoad(t *testing.T, cl *client.Client, prefix string, shards int) *shardLoad {
	t.Helper()
	l := &shardLoad{topics: topicPerShard(prefix, shards)}
	for _, topic := range l.topics {
		createTopic(t, cl, topic, "g")
		lg := newLedger()
		consume(t, cl, topic, "g", lg)
		l.ledgers = append(l.ledgers, lg)
	}
	return l
}

// publish publishes total messages to every topic at once; pace, if not nil, runs after
// each message is queued.
func (l *shardLoad) publish(t *testing.T, cl *client.Client, total int, pace func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	for k, topic := range l.topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishAll(t, cl, topic, fmt.Sprintf("s%d", k), total, l.ledgers[k], pace)
		}()
	}
	wg.Wait()
}

// check is the total-queue check of every topic.
func (l *shardLoad) check(t *testing.T, cl *client.Client, total int) {
	t.Helper()
	for k, topic := range l.topics {
		checkQueue(t, cl, topic, l.ledgers[k], total)
	}
}

// waitSpread waits until every shard is led by the node the balancer prefers for it (shard
// i by the i-th node in id order, modulo their number: c.nodes is in that order), so no
// node leads two, and returns each shard's leader. Any spread would not do: the balancer
// would still move leaders after it, and a call in flight during a move fails with
// "not leader" when its outcome is unknown (TestShardsShareTokensUsersAndSessions
// failed once in .ci/run so).
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
			for _, gs := range st.Groups {
				if gs.Role == "leader" {
					g, _ := shard.Index(gs.Name)
					leaders[g] = nd
					leads++
				}
			}
			if leads > 1 {
				return false
			}
		}
		for i, l := range leaders {
			if l != c.nodes[i%len(c.nodes)] {
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
	resp, err := nd.httpClient().Get(nd.url(path))
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
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.shards.t", shards)
	topics := load.topics

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

	victim := leaders[1]
	var killedAt atomic.Int64
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		dmqtest.Eventually(t, 60*time.Second, "a third of shard s1's publishes acknowledged", func() bool {
			acked, _, _ := load.ledgers[1].counts()
			return acked >= perTopic/3
		})
		killedAt.Store(time.Now().UnixNano())
		victim.p.Kill()
		t.Logf("killed %s, leader of shard s1, with -9", victim.id)
	}()
	load.publish(t, cl, perTopic, nil)
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
	load.check(t, cl, perTopic)

	// The node comes back, catches up, and the balancer gives it a shard again.
	c.start(victim)
	c.waitCaughtUp()
	again := c.waitSpread(60 * time.Second)
	var names []string
	for k, l := range again {
		names = append(names, fmt.Sprintf("s%d:%s", k, l.id))
	}
	t.Logf("leaders after the restart: %s", strings.Join(names, " "))
	c.waitPeersKnown()
	var metrics string
	dmqtest.Eventually(t, 5*time.Second, "follower lag in the metrics of s1's leader", func() bool {
		resp, err := again[1].httpClient().Get(again[1].url("/metrics"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		metrics = string(b)
		return strings.Count(metrics, `dmq_cluster_follower_lag_entries{follower=`) >= 2
	})
	if !regexp.MustCompile(`dmq_cluster_follower_lag_entries\{follower="n\d",group="s1",node="` + again[1].id + `"\} 0`).MatchString(metrics) {
		t.Fatalf("no caught-up follower of s1 in %s's metrics:\n%s", again[1].id, grepLines(metrics, "follower_lag"))
	}

	// An operator's choice of leader stays (the balancer keeps it) until a transfer
	// without a node gives the shard back to the balancer.
	runCLI(t, "cluster", "transfer-leader", "--shard", "s1", c.nodes[0].id, "--http", c.nodes[2].http)
	ledBy := func(nd *node) bool {
		st, err := status(nd)
		return err == nil && st.Groups[1].Role == "leader"
	}
	dmqtest.Eventually(t, 15*time.Second, "shard s1 led by "+c.nodes[0].id, func() bool { return ledBy(c.nodes[0]) })
	time.Sleep(balanceWait)
	if !ledBy(c.nodes[0]) {
		t.Fatalf("shard s1 left %s, the leader an operator chose", c.nodes[0].id)
	}
	runCLI(t, "cluster", "transfer-leader", "--shard", "s1", "--http", c.nodes[2].http)
	dmqtest.Eventually(t, 30*time.Second, "shard s1 back on its preferred node "+again[1].id, func() bool { return ledBy(again[1]) })
	c.stopAll()
	for _, topic := range topics {
		c.checkReplicasEqual(topic, perTopic)
	}
	// The shard count is fixed: a node started with another is refused, its data untouched.
	n1 := c.nodes[0]
	out, err := exec.Command(dmqtest.Binary(t), "server", "--data", n1.dir, "--node-id", n1.id, "--shards", "2", "--peers", c.peers,
		"--cluster-listen", n1.raft, "--listen", n1.grpc, "--http", n1.http).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "start it with --shards 3") {
		t.Fatalf("restarting a node of a 3-shard cluster with --shards 2: %v\n%s", err, out)
	}
}

// setupToken finds the one-time administrator token the leader of shard s0 printed: the
// latest printed, as each new leader of s0 revokes the one before and prints another.
func (c *testCluster) setupToken() string {
	c.t.Helper()
	var token, at string
	re := regexp.MustCompile(`time=(\S+) .*setup_token=(dmq_[A-Za-z0-9_-]+)`)
	dmqtest.Eventually(c.t, 15*time.Second, "a setup token in a node's log", func() bool {
		for _, nd := range c.nodes {
			for _, m := range re.FindAllStringSubmatch(nd.p.Logs(), -1) {
				if m[1] > at { // RFC 3339 times in UTC sort as strings
					token, at = m[2], m[1]
				}
			}
		}
		return token != ""
	})
	return token
}

// TestShardsShareTokensUsersAndSessions runs three shards with authentication: a token
// created on s0's leader is accepted by every shard's leader, and once revoked refused
// by all; a console user logged in through one node sees topics of every shard through
// that node, whichever node leads them.
func TestShardsShareTokensUsersAndSessions(t *testing.T) {
	const shards = 3
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards), "--auth")
	leaders := c.waitSpread(60 * time.Second)
	setup := c.dial(client.WithToken(c.setupToken()))
	ctx := t.Context()
	resp, err := setup.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "ops", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	admin := c.dial(client.WithToken(resp.Token))
	topics := topicPerShard("dev.shop.t", shards)
	for _, topic := range topics {
		if _, err := admin.CreateTopic(ctx, client.TopicSpec{Name: topic, Owner: "shop"}); err != nil {
			for _, nd := range c.nodes {
				t.Logf("%s:\n%s", nd.id, nd.notableLogs())
			}
			t.Fatal(err)
		}
	}
	// The audit log gathers every shard's: topic decisions are kept in the topic's.
	audit, err := admin.API().ListAudit(ctx, &dmqv1.ListAuditRequest{Action: "topic.create"})
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for _, e := range audit.Entries {
		created = append(created, e.Target)
	}
	slices.Sort(created)
	if want := slices.Sorted(slices.Values(topics)); fmt.Sprint(created) != fmt.Sprint(want) {
		t.Fatalf("topic.create entries of the audit log through the SDK: %v, want %v", created, want)
	}
	req, _ := http.NewRequest(http.MethodGet, c.nodes[2].url("/api/v1/audit?action=topic.create"), nil)
	req.Header.Set("Authorization", "Bearer "+resp.Token)
	aresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Entries []struct{ Target string } }
	json.NewDecoder(aresp.Body).Decode(&page)
	aresp.Body.Close()
	if aresp.StatusCode != http.StatusOK || len(page.Entries) != shards {
		t.Fatalf("GET /api/v1/audit through %s: %s, %+v", c.nodes[2].id, aresp.Status, page)
	}
	shopTok, err := admin.API().CreateToken(ctx, &dmqv1.CreateTokenRequest{App: "shop", Grants: []*dmqv1.TokenGrant{{Pattern: "dev.shop.*", Publish: true}}})
	if err != nil {
		t.Fatal(err)
	}
	shop := c.dial(client.WithToken(shopTok.Token))
	publish := func(topic string) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := shop.Publish(ctx, topic, &client.Message{Body: []byte("x")})
		return err
	}
	// Each shard's leader knows the new token at once: its node reloads s0's registry as
	// its replica applies the token, and a node that does not know a token yet waits for
	// that (auth.Registry.CatchUp) instead of refusing it.
	for _, topic := range topics {
		if err := publish(topic); err != nil {
			t.Fatalf("a publish to %s right after the token was created: %v", topic, err)
		}
	}
	if _, err := admin.API().RevokeToken(ctx, &dmqv1.RevokeTokenRequest{App: "shop"}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		dmqtest.Eventually(t, 5*time.Second, "the revoked token refused on "+topic+"'s shard", func() bool {
			return grpcstatus.Code(publish(topic)) == codes.Unauthenticated
		})
	}

	// A console user logs in through the leader of s1; the session is known to every
	// node, so that node shows the topics of every shard (passed on to their leaders).
	if _, err := admin.API().CreateUser(ctx, &dmqv1.CreateUserRequest{Name: "alice", Role: "viewer", Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	via := leaders[1]
	body := strings.NewReader(`{"user":"alice","password":"correct horse"}`)
	lresp, err := http.Post("http://"+via.http+"/api/v1/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	lresp.Body.Close()
	var cookie *http.Cookie
	for _, ck := range lresp.Cookies() {
		if ck.Name == "dmq_session" {
			cookie = ck
		}
	}
	if lresp.StatusCode != http.StatusOK || cookie == nil {
		t.Fatalf("login through %s: %s, cookie %v", via.id, lresp.Status, cookie)
	}
	get := func(path string, v any) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+via.http+path, nil)
		req.AddCookie(cookie)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		json.NewDecoder(r.Body).Decode(v)
		return r.StatusCode
	}
	for _, topic := range topics {
		var tp struct{ Name string }
		dmqtest.Eventually(t, 5*time.Second, "alice's view of "+topic+" through "+via.id, func() bool {
			return get("/api/v1/topics/"+topic, &tp) == http.StatusOK && tp.Name == topic
		})
	}
	var list struct{ Total int }
	if code := get("/api/v1/topics", &list); code != http.StatusOK || list.Total != shards {
		t.Fatalf("alice's topic list through %s: %d, %d topics; want %d", via.id, code, list.Total, shards)
	}
	r, err := http.Get("http://" + via.http + "/api/v1/topics/" + topics[2])
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a request without session for %s through %s: %s, want 401", topics[2], via.id, r.Status)
	}
}

// TestShardsOverMutualTLS runs three shards with TLS on every port: the cluster port with
// mutual TLS against the cluster's CA, the client ports with the same certificates, one
// per node naming its id (a node started with another node's certificate is refused). The
// nodes elect and spread leaders over TLS, pass calls to each other over TLS (the topic
// list through the SDK and through one node's HTTPS API, a topic's details passed to its
// shard's leader), and a client that trusts the CA publishes to every shard.
func TestShardsOverMutualTLS(t *testing.T) {
	const shards = 3
	ca := testcert.NewCA(t, "cluster")
	var certs []testcert.Cert // each node's names its id
	for _, id := range []string{"n1", "n2", "n3"} {
		certs = append(certs, ca.Issue(t, id, testcert.Both, testcert.Loopback))
	}
	dir := filepath.Dir(certs[0].CertFile)
	// A node whose certificate names another node is refused before it starts.
	out, err := exec.Command(dmqtest.Binary(t), "server", "--node-id", "n4", "--data", t.TempDir(), "--shards", fmt.Sprint(shards),
		"--tls-cert", certs[0].CertFile, "--tls-key", certs[0].KeyFile, "--cluster-ca", ca.File,
		"--cluster-listen", dmqtest.FreePort(t), "--listen", dmqtest.FreePort(t), "--http", dmqtest.FreePort(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not name node n4") {
		t.Fatalf("a node started with n1's certificate as n4: %v\n%s", err, out)
	}
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards), "--tls-cert", filepath.Join(dir, "{id}.crt"), "--tls-key", filepath.Join(dir, "{id}.key"), "--cluster-ca", ca.File)
	c.waitSpread(60 * time.Second)
	cl := c.dial(client.WithTLS(&tls.Config{RootCAs: ca.Pool}))
	topics := topicPerShard("dev.secure.t", shards)
	lg := newLedger()
	for k, topic := range topics {
		createTopic(t, cl, topic, "g")
		consume(t, cl, topic, "g", lg)
		publishAll(t, cl, topic, fmt.Sprintf("s%d", k), 200, lg, nil)
	}
	checkQueueAll := func() {
		dmqtest.Eventually(t, 30*time.Second, "every acknowledged message delivered", func() bool {
			_, _, missing := lg.counts()
			return missing == 0
		})
		lg.check(t, shards*200)
	}
	checkQueueAll()
	ts, err := cl.ListTopics(t.Context(), client.TopicFilter{})
	if err != nil || len(ts) != shards {
		t.Fatalf("ListTopics over TLS: %d topics, %v; want %d", len(ts), err, shards)
	}
	nd := c.nodes[1]
	var list struct{ Total int }
	if code := getJSON(t, nd, "/api/v1/topics", &list); code != http.StatusOK || list.Total != shards {
		t.Fatalf("%s: GET /api/v1/topics over HTTPS = %d, %+v", nd.id, code, list)
	}
	for _, topic := range topics {
		var tp struct{ Name string }
		if code := getJSON(t, nd, "/api/v1/topics/"+topic, &tp); code != http.StatusOK || tp.Name != topic {
			t.Fatalf("%s: GET /api/v1/topics/%s over HTTPS = %d, %+v", nd.id, topic, code, tp)
		}
	}
	// A client that does not trust the CA gets nothing.
	stranger, err := client.Dial(c.seeds(), client.WithTLS(&tls.Config{}), client.WithRetry(client.RetryPolicy{Attempts: 1}))
	if err == nil {
		defer stranger.Close()
		if _, err := stranger.ListTopics(t.Context(), client.TopicFilter{}); err == nil {
			t.Fatal("a client that does not trust the cluster's CA was served")
		}
	}
	// The cluster port answers a plain-text hello with no hello: it speaks TLS only.
	conn, err := net.Dial("tcp", nd.raft)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("DMQC\x01\x03dmq\x02s0\x02n9"))
	reply, _ := io.ReadAll(conn)
	if strings.HasPrefix(string(reply), "DMQC") {
		t.Fatalf("the cluster port answered a plain-text hello: %q", reply)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAddingANodeMovesShardLeadersToIt starts three nodes with four shards (one node
// leads two), adds a fourth node under load: it receives every shard, and the leader
// balancer hands it a shard, so each node leads one. Nothing acknowledged is lost and
// every replica, the new one included, holds the same logs.
func TestAddingANodeMovesShardLeadersToIt(t *testing.T) {
	const shards, perTopic = 4, 2000
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards))
	c.waitCaughtUp() // a leader for every shard
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.grow.t", shards)
	published := make(chan struct{})
	go func() {
		defer close(published)
		load.publish(t, cl, perTopic, func(i int) {
			if i%200 == 0 {
				time.Sleep(100 * time.Millisecond) // keep the load going through the join
			}
		})
	}()

	// Bad joiners are refused and change nothing: a node started with another shard
	// count, an id that is not the node's.
	odd := &node{id: "n5", grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: t.TempDir()}
	odd.p = dmqtest.StartProcess(t, odd.dir, "--node-id", odd.id, "--join", "--shards", "2",
		"--cluster-listen", odd.raft, "--listen", odd.grpc, "--http", odd.http)
	for _, bad := range []struct{ id, want string }{{"n5", "restart it with --shards 4"}, {"n9", "is n5, not n9"}} {
		out, err := exec.Command(dmqtest.Binary(t), "cluster", "add-node", bad.id, odd.raft, "--http", c.nodes[1].http).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.want) {
			t.Fatalf("add-node %s at %s: %v\n%s", bad.id, odd.raft, err, out)
		}
	}
	c.stop(odd)
	if st, err := status(c.nodes[0]); err != nil || len(st.Groups[0].Servers) != 3 {
		t.Fatalf("after refused joins, s0's members: %+v, %v", st.Groups[0].Servers, err)
	}

	n4 := &node{id: "n4", grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: t.TempDir()}
	n4.p = dmqtest.StartProcess(t, n4.dir, "--node-id", n4.id, "--join", "--shards", fmt.Sprint(shards),
		"--cluster-listen", n4.raft, "--listen", n4.grpc, "--http", n4.http)
	out := runCLI(t, "cluster", "add-node", "n4", n4.raft, "--http", c.nodes[1].http)
	t.Logf("%s", out)
	c.nodes = append(c.nodes, n4)
	leaders := c.waitSpread(60 * time.Second)
	var names []string
	for k, l := range leaders {
		names = append(names, fmt.Sprintf("s%d:%s", k, l.id))
	}
	t.Logf("leaders after the join: %s", strings.Join(names, " "))
	if leaders[3] != n4 {
		t.Fatalf("shard s3 (preferred leader n4, the 4th voter) is led by %s", leaders[3].id)
	}
	<-published
	load.check(t, cl, perTopic)
	c.checkReplicas(perTopic, load.topics...)
}

// TestShardedBackupRestoresAsANewCluster copies a stopped node of a three-shard cluster
// without its Raft state, as docs/operations/cluster.md says to back up, and starts the
// copy as the first node of a new cluster with the same shard count: every shard's
// topics are there, with their messages, and it serves them.
func TestShardedBackupRestoresAsANewCluster(t *testing.T) {
	const shards, perTopic = 3, 300
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards))
	c.waitCaughtUp()
	cl := c.dial()
	load := newShardLoad(t, cl, "dev.backup.t", shards)
	load.publish(t, cl, perTopic, nil)
	load.check(t, cl, perTopic)
	c.waitCaughtUp()
	src := c.nodes[2]
	c.stop(src)

	restored := &node{id: "r1", grpc: dmqtest.FreePort(t), http: dmqtest.FreePort(t), raft: dmqtest.FreePort(t), dir: filepath.Join(t.TempDir(), "restored")}
	if out, err := exec.Command("cp", "-a", src.dir, restored.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the backup: %v\n%s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(restored.dir, "raft")); err != nil {
		t.Fatal(err)
	}
	restored.p = dmqtest.StartProcess(t, restored.dir, "--node-id", restored.id, "--shards", fmt.Sprint(shards),
		"--cluster-listen", restored.raft, "--listen", restored.grpc, "--http", restored.http)
	rc, err := client.Dial(restored.grpc, client.WithRetry(client.RetryPolicy{Attempts: 200, Backoff: 20 * time.Millisecond, MaxBackoff: 250 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, topic := range load.topics {
		if n := storedCount(t, rc, topic); n != perTopic {
			t.Fatalf("the restored cluster holds %d messages of %s, want %d; its notable log lines:\n%s", n, topic, perTopic, restored.notableLogs())
		}
		if _, err := rc.Publish(t.Context(), topic, &client.Message{Body: []byte("after the restore")}); err != nil {
			t.Fatalf("publish to %s on the restored cluster: %v", topic, err)
		}
	}
}
