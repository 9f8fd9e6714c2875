package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dmqio/dmq/internal/admin"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/shard"
)

// The HTTP side of a cluster node. Every node answers for itself: health, /metrics and
// its view of the cluster. Every other request belongs to a shard — a topic's to the
// topic's, the rest (console, users, tokens, clients, audit, membership) to s0 — and is
// served by that shard's broker: here if this node leads it; otherwise, in a cluster of
// one shard, by a redirect to its leader (the console moves there), and in a cluster of
// several by passing the request on to the leader, so that one console shows them all.
// A membership change is always passed on, and waits for a leader that answers
// (forwardChange): it is most needed when a node died, maybe the leader. The list of
// topics and the audit log gather every shard's.

// shardParam names the shard a request is for when it is passed from node to node.
const shardParam = "shard"

// forwardedHeader marks a request one node passed to another: it is not passed again.
const forwardedHeader = "X-Dmq-Forwarded-By"

// notLeaderHeader marks the answer of a node that does not lead the request's shard (any
// more), or knows no leader: nothing was done, and the node that passed the request on
// asks the shard's next leader.
const notLeaderHeader = "X-Dmq-Not-Leader"

// ServeHTTP routes a request (see above).
func (c *clusterNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
		c.handleHealth(w, r)
		return
	case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
		c.handleMetrics(w, r)
		return
	case r.URL.Path == "/api/v1/cluster" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, c.status())
		return
	case r.URL.Path == "/api/v1/topics" && r.Method == http.MethodGet && c.nShards > 1 && !r.URL.Query().Has(shardParam):
		c.listTopics(w, r)
		return
	case r.URL.Path == "/api/v1/audit" && r.Method == http.MethodGet && c.nShards > 1 && !r.URL.Query().Has(shardParam):
		c.listAudit(w, r)
		return
	}
	sh, err := c.httpShard(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	c.serveShard(w, r, sh)
}

// httpShard finds the shard a request belongs to.
func (c *clusterNode) httpShard(r *http.Request) (*shardReplica, error) {
	if name := r.URL.Query().Get(shardParam); name != "" {
		i, err := shard.Index(name)
		if err != nil || i >= c.nShards {
			return nil, fmt.Errorf("%s=%q names no shard of this cluster (it has %d)", shardParam, name, c.nShards)
		}
		return c.shard(i), nil
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/topics/"); ok {
		topic, _, _ := strings.Cut(rest, "/")
		return c.shardOf(topic), nil
	}
	if r.URL.Path == "/api/v1/topics" && r.Method == http.MethodPost && c.nShards > 1 {
		// The topic is named in the body: read it, and put it back for the broker.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read the request: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct{ Name string }
		json.Unmarshal(body, &req) // a bad body is the broker's to refuse
		return c.shardOf(req.Name), nil
	}
	return c.shard(0), nil
}

// serveShard serves r with sh's broker, or sends it to sh's leader.
func (c *clusterNode) serveShard(w http.ResponseWriter, r *http.Request, sh *shardReplica) {
	if st := sh.enter(); st != nil {
		defer st.calls.leave()
		st.http.ServeHTTP(w, r)
		return
	}
	l := sh.leaderAddrs()
	forwarded := r.Header.Get(forwardedHeader) != ""
	switch {
	case isMembershipChange(r) && !forwarded:
		c.forwardChange(w, r, sh)
	case l.HTTP == "":
		w.Header().Set(notLeaderHeader, c.s.cfg.NodeID)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": fmt.Sprintf("node %s does not lead shard %s and no leader is known yet (an election is in progress)", c.s.cfg.NodeID, sh.name)})
	case c.nShards == 1 && !forwarded:
		http.Redirect(w, r, c.scheme()+"://"+l.HTTP+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	case forwarded:
		w.Header().Set(notLeaderHeader, c.s.cfg.NodeID)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": fmt.Sprintf("node %s does not lead shard %s (any more); its leader is %s", c.s.cfg.NodeID, sh.name, l.ID)})
	default:
		c.proxy(sh, l, nil).ServeHTTP(w, r)
	}
}

// isMembershipChange reports whether r changes the cluster (membershipRoutes).
func isMembershipChange(r *http.Request) bool {
	return r.Method != http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/cluster/")
}

// leaderWait bounds how long a membership change waits for a shard's leader to answer.
// A leader that died is replaced within about two heartbeat timeouts (a second); a shard
// that has lost the majority of its voters elects none.
const leaderWait = 20 * time.Second

// leaderRetry is how often a change waiting for a shard's leader looks again.
const leaderRetry = 100 * time.Millisecond

// untilLeader calls try with sh's leader as this node knows it (zero while none is known)
// until try reports it is done, ctx ends or leaderWait passes: the membership changes
// that follow a node's death must not fail because that node led the shard (the others
// still name it leader until they notice, then elect another). try is done when the
// shard's leader (this node, or the one it asked) answered; it is not while no leader
// is known, the one named does not answer, or it answers that it no longer leads, and
// then it did nothing, so asking again is safe.
func (c *clusterNode) untilLeader(ctx context.Context, sh *shardReplica, try func(l meta.Node) (done bool, err error)) error {
	deadline := time.Now().Add(leaderWait)
	for {
		done, err := try(sh.leaderAddrs())
		if done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader of shard %s answered within %s (has it lost the majority of its voters?): %w", sh.name, leaderWait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the leader of shard %s: %w (last: %v)", sh.name, ctx.Err(), err)
		case <-time.After(leaderRetry):
		}
	}
}

// errNoLeader is what a membership change waits out while a shard elects its leader.
var errNoLeader = errors.New("no leader is known yet (an election is in progress)")

// forwardChange passes a membership change on to sh's leader (see untilLeader), which may
// turn out to be this node, and answers with the leader's answer.
func (c *clusterNode) forwardChange(w http.ResponseWriter, r *http.Request, sh *shardReplica) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "read the request: " + err.Error()})
		return
	}
	attempt := func() *http.Request {
		a := r.Clone(r.Context())
		a.Body, a.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		return a
	}
	var rec *httptest.ResponseRecorder
	err = c.untilLeader(r.Context(), sh, func(l meta.Node) (bool, error) {
		rec = httptest.NewRecorder()
		if st := sh.enter(); st != nil { // elected meanwhile
			defer st.calls.leave()
			st.http.ServeHTTP(rec, attempt())
			return true, nil
		}
		if l.HTTP == "" {
			return false, errNoLeader
		}
		var failed error
		c.proxy(sh, l, &failed).ServeHTTP(rec, attempt())
		switch {
		case failed != nil:
			return false, fmt.Errorf("leader %s at %s did not answer: %w", l.ID, l.HTTP, failed)
		case rec.Header().Get(notLeaderHeader) != "":
			return false, fmt.Errorf("%s answered: %s", l.ID, strings.TrimSpace(rec.Body.String()))
		}
		return true, nil
	})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	copyResponse(w, rec)
}
func (c *clusterNode) scheme() string {
	if c.s.tc != nil {
		return "https"
	}
	return "http"
}

// proxy passes requests for sh on to its leader l. The request is passed as it came:
// the leader finds the same shard in it (a membership change without ?shard= still
// concerns every shard). When the leader does not answer, the error is set in *failed
// if failed is not nil (nothing is written), else answered.
func (c *clusterNode) proxy(sh *shardReplica, l meta.Node, failed *error) http.Handler {
	return &httputil.ReverseProxy{
		Transport: c.peerHTTP,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: c.scheme(), Host: l.HTTP})
			pr.Out.Host = pr.In.Host // the console's origin checks compare with it
			pr.Out.Header.Set(forwardedHeader, c.s.cfg.NodeID)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if failed != nil {
				*failed = err
				return
			}
			writeJSON(w, http.StatusBadGateway, map[string]any{"error": fmt.Sprintf("shard %s's leader %s at %s did not answer: %v", sh.name, l.ID, l.HTTP, err)})
		},
	}
}

// gather asks every shard for r (its own broker or, passed on, its leader's), naming
// the shard; it hands each answer's body to part, or answers w with the first failure
// and returns false.
func (c *clusterNode) gather(w http.ResponseWriter, r *http.Request, part func(shard string, body []byte) error) bool {
	for _, sh := range c.shardList() {
		rec := httptest.NewRecorder()
		sr := r.Clone(r.Context())
		q := sr.URL.Query()
		q.Set(shardParam, sh.name)
		sr.URL.RawQuery = q.Encode()
		sr.RequestURI = ""
		c.serveShard(rec, sr, sh)
		if rec.Code != http.StatusOK {
			copyResponse(w, rec)
			return false
		}
		if err := part(sh.name, rec.Body.Bytes()); err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]any{"error": fmt.Sprintf("shard %s answered %s with %v", sh.name, r.URL.Path, err)})
			return false
		}
	}
	return true
}

// pageLimit is the page size a list request asks for (the API's default 100).
func pageLimit(r *http.Request) int {
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n >= 1 && n <= 1000 {
		return n
	}
	return 100
}

// listTopics answers GET /api/v1/topics from every shard: each answers the same query
// (filters, the page's start and size), and the first page-size names of the merged
// lists are the page.
func (c *clusterNode) listTopics(w http.ResponseWriter, r *http.Request) {
	var page struct {
		Topics    []json.RawMessage `json:"topics"`
		Total     int               `json:"total"`
		NextAfter string            `json:"next_after"`
	}
	var all []json.RawMessage
	total, more := 0, false
	ok := c.gather(w, r, func(_ string, body []byte) error {
		page.Topics, page.NextAfter = nil, ""
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		all = append(all, page.Topics...)
		total += page.Total
		more = more || page.NextAfter != ""
		return nil
	})
	if !ok {
		return
	}
	name := func(m json.RawMessage) string {
		var t struct{ Name string }
		json.Unmarshal(m, &t)
		return t.Name
	}
	slices.SortFunc(all, func(a, b json.RawMessage) int { return strings.Compare(name(a), name(b)) })
	out := map[string]any{"total": total}
	if limit := pageLimit(r); len(all) > limit {
		all, more = all[:limit], true
	}
	if more && len(all) > 0 {
		out["next_after"] = name(all[len(all)-1])
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	out["topics"] = all
	writeJSON(w, http.StatusOK, out)
}

// listAudit answers GET /api/v1/audit from every shard: users, tokens and logins are in
// s0's log, decisions on topics in their shard's. Newest first, the page size.
func (c *clusterNode) listAudit(w http.ResponseWriter, r *http.Request) {
	var all []json.RawMessage
	ok := c.gather(w, r, func(_ string, body []byte) error {
		var page struct {
			Entries []json.RawMessage `json:"entries"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		all = append(all, page.Entries...)
		return nil
	})
	if !ok {
		return
	}
	at := func(m json.RawMessage) int64 {
		var e struct {
			TimeMs int64 `json:"time_ms"`
		}
		json.Unmarshal(m, &e)
		return e.TimeMs
	}
	slices.SortStableFunc(all, func(a, b json.RawMessage) int { return cmp.Compare(at(b), at(a)) })
	all = all[:min(pageLimit(r), len(all))]
	if all == nil {
		all = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": all})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// handleHealth: the node is alive and serves as it should (/healthz: 503 with the
// reasons while a shard it keeps has no leader, its replica cannot write, or its disk is
// below the reserve), and ready while it also leads a shard (/readyz: 503 on a node that
// leads none, which only passes requests on).
func (c *clusterNode) handleHealth(w http.ResponseWriter, r *http.Request) {
	var leads []string
	for _, sh := range c.shardList() {
		if sh.leading() != nil {
			leads = append(leads, sh.name)
		}
	}
	code := http.StatusOK
	if r.URL.Path == "/readyz" && len(leads) == 0 {
		code = http.StatusServiceUnavailable
	}
	role := "follower"
	if c.shard(0).leading() != nil {
		role = "leader"
	}
	l := c.shard(0).leaderAddrs()
	body := map[string]any{"status": "ok", "fsync": !c.s.cfg.NoSync, "role": role, "leads": leads, "leader": l.ID, "leader_http": l.HTTP}
	if why := c.unready(); len(why) > 0 {
		code, body["status"], body["reasons"] = http.StatusServiceUnavailable, "unavailable", why
	}
	writeJSON(w, code, body)
}

// handleMetrics serves the node's metrics: its Raft groups, the process, and the broker
// of each shard it leads (labelled with the shard).
func (c *clusterNode) handleMetrics(w http.ResponseWriter, r *http.Request) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, sh := range c.shardList() {
		if st := sh.leading(); st != nil {
			prometheus.WrapRegistererWith(prometheus.Labels{"shard": sh.name}, reg).MustRegister(admin.NewCollector(st.backend.Broker))
		}
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// membershipRoutes adds a led shard's membership endpoints, for administrators. Nodes
// are added to s0 (the cluster's members; each shard's leader then adds the nodes its
// placement gives it). A removal naming its shard (?shard=) changes that one; otherwise
// (it reached s0) it is made in every shard, each by its leader. A leadership transfer
// concerns the shard it names, else s0.
func (sh *shardReplica) membershipRoutes(mux *http.ServeMux, adminOnly func(http.Handler) http.Handler) {
	if sh.index == 0 {
		mux.Handle("POST /api/v1/cluster/nodes", adminOnly(http.HandlerFunc(sh.handleAddNode)))
		mux.Handle("PUT /api/v1/cluster/replicas", adminOnly(http.HandlerFunc(sh.handleSetReplicas)))
	}
	mux.Handle("DELETE /api/v1/cluster/nodes/{id}", adminOnly(http.HandlerFunc(sh.handleRemoveNode)))
	mux.Handle("POST /api/v1/cluster/leader", adminOnly(http.HandlerFunc(sh.handleTransfer)))
}

// membershipTimeout bounds a membership change (a new voter must catch up first).
const membershipTimeout = time.Minute

// handleAddNode adds a member: {"id": "n4", "addr": "host:port"} (its cluster
// listener). The node, started with --join, joins s0 as a non-voter, receives a snapshot
// and the log, and votes once caught up (reconcile promotes it): the answer comes then.
// The leaders of the shards placed on it add it to theirs the same way.
func (sh *shardReplica) handleAddNode(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	var req struct{ ID, Addr string }
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be {\"id\": ..., \"addr\": ...}: " + err.Error()})
		return
	}
	if _, _, err := net.SplitHostPort(req.Addr); err != nil || req.ID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("need a node id and its cluster address as host:port (got id %q, addr %q)", req.ID, req.Addr)})
		return
	}
	for _, srv := range sh.group.Stats().Servers {
		if srv.ID == req.ID && srv.Addr != req.Addr {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("node %s is already a member at %s: remove it first to move it", req.ID, srv.Addr)})
			return
		}
		if srv.ID != req.ID && srv.Addr == req.Addr {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("address %s belongs to member %s", req.Addr, srv.ID)})
			return
		}
	}
	if code, err := sh.c.checkJoiner(r.Context(), req.ID, req.Addr); err != nil {
		writeJSON(w, code, map[string]any{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if !slices.ContainsFunc(sh.group.Stats().Servers, func(s cluster.Server) bool { return s.ID == req.ID }) {
		if err := sh.group.AddNonvoter(ctx, req.ID, req.Addr); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
			return
		}
		sh.c.s.logger.Info("cluster: node added; it votes once caught up", "node", req.ID, "addr", req.Addr)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !slices.ContainsFunc(sh.group.Stats().Servers, func(s cluster.Server) bool { return s.ID == req.ID && s.Voter }) {
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusAccepted, map[string]any{"error": fmt.Sprintf("node %s is a member, still catching up after %s: it votes once it has (see dmq cluster status)", req.ID, membershipTimeout)})
			return
		case <-tick.C:
		}
	}
	// Then the other shards placed on it, whose leaders add it (reconcile): until it
	// votes in each, losing another of that shard's voters could cost it its majority.
	ctx, cancel = context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	for {
		missing := sh.c.notVoterIn(req.ID)
		if len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusAccepted, map[string]any{"error": fmt.Sprintf("node %s votes in s0 but, after %s more, not yet in %s: its replicas are still catching up (see dmq cluster status); do not stop another node until it votes there", req.ID, membershipTimeout, strings.Join(missing, ", "))})
			return
		case <-tick.C:
		}
	}
	writeJSON(w, http.StatusOK, sh.c.status())
}

// notVoterIn lists the shards placed on node id in which it does not vote yet, as each
// shard's leader counts its members (this node's own count where it leads the shard,
// else what the leader last told).
func (c *clusterNode) notVoterIn(id string) []string {
	var missing []string
	for i, placed := range c.placements(c.members()) {
		if !slices.Contains(placed, id) {
			continue
		}
		sh := c.shard(i)
		var servers []cluster.Server
		if sh.hosted() && sh.group.IsLeader() {
			servers = sh.group.Stats().Servers
		} else if v, ok := c.leaderView(sh.name); ok {
			servers = v.info.Groups[sh.name].Servers
		}
		if !slices.ContainsFunc(servers, func(s cluster.Server) bool { return s.ID == id && s.Voter }) {
			missing = append(missing, sh.name)
		}
	}
	return missing
}

// checkJoiner asks the node at addr, over the cluster port, who it is and which shards it
// hosts before it is added: a wrong address or id, or a node started with another shard
// count (it could never catch up with the shards it lacks), is refused and nothing
// changes.
func (c *clusterNode) checkJoiner(ctx context.Context, id, addr string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	b, err := c.node.PeerInfo(ctx, addr)
	if err != nil {
		return http.StatusServiceUnavailable, fmt.Errorf("the node at %s does not answer on its cluster port (start it first, with --join): %v", addr, err)
	}
	var info nodeInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return http.StatusBadGateway, fmt.Errorf("the node at %s answered %v", addr, err)
	}
	if info.ID != id {
		return http.StatusConflict, fmt.Errorf("the node at %s is %s, not %s", addr, info.ID, id)
	}
	if info.Shards != c.nShards {
		return http.StatusConflict, fmt.Errorf("node %s was started with --shards %d; this cluster has %d shards: restart it with --shards %d", id, info.Shards, c.nShards, c.nShards)
	}
	return 0, nil
}

// handleRemoveNode removes a member (for a dead node; a live one stops being a voter).
func (sh *shardReplica) handleRemoveNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found := false
	for _, srv := range sh.group.Stats().Servers {
		found = found || srv.ID == id
	}
	switch {
	case !found && r.URL.Query().Has(shardParam):
		writeJSON(w, http.StatusOK, sh.c.status()) // a shard not placed on it
		return
	case !found:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("node %q is not a member", id)})
		return
	}
	err := sh.onShards(r, nil, func(t *shardReplica, ctx context.Context) error { return t.group.RemoveServer(ctx, id) })
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	sh.c.s.logger.Info("cluster: node removed", "node", id, "shards", sh.scope(r))
	writeJSON(w, http.StatusOK, sh.c.status())
}

// handleSetReplicas changes how many nodes keep each shard but s0: {"replicas": 3}
// (0: every node). It is recorded in s0; every node's reconcile then moves the replicas
// (added ones catch up before removed ones go), which the answer does not wait for.
func (sh *shardReplica) handleSetReplicas(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Replicas *int `json:"replicas"`
	}
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req)
	if err == nil && req.Replicas == nil {
		err = errors.New("no replicas given")
	}
	if err == nil {
		err = config.CheckReplicas(*req.Replicas)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be {\"replicas\": 0, 1, 3, 5, 7 or 9}: " + err.Error()})
		return
	}
	if err := sh.store.Meta().SetReplicas(*req.Replicas); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	sh.c.s.logger.Info("cluster: replicas per shard changed; the replicas move in the background", "replicas", *req.Replicas)
	writeJSON(w, http.StatusOK, sh.c.status())
}

// handleTransfer hands the shard's leadership to {"to": "n2"} (empty: the most
// up-to-date voter). The choice is recorded so that the leader balancer keeps it; a
// transfer without "to" gives the shard back to the balancer.
func (sh *shardReplica) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var req struct{ To string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be {\"to\": \"node id or empty\"}: " + err.Error()})
		return
	}
	if req.To != "" && !slices.ContainsFunc(sh.group.Stats().Servers, func(s cluster.Server) bool { return s.ID == req.To && s.Voter }) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("node %q is not a voting member of shard %s", req.To, sh.name)})
		return
	}
	if err := sh.store.Meta().SetPinnedLeader(req.To); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := sh.group.TransferLeadership(ctx, req.To); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	sh.c.s.logger.Info("cluster: leadership transferred", "shard", sh.name, "to", req.To)
	writeJSON(w, http.StatusOK, map[string]any{"transferred": true, "shard": sh.name, "to": req.To})
}

// scope names the shards a membership request changes.
func (sh *shardReplica) scope(r *http.Request) string {
	if r.URL.Query().Has(shardParam) {
		return sh.name
	}
	return "all"
}

// onShards makes a membership change in the request's scope: this shard, or every shard
// (each by its leader: here, or the request passed to the leader naming the shard), s0
// last.
func (sh *shardReplica) onShards(r *http.Request, body []byte, change func(*shardReplica, context.Context) error) error {
	targets := []*shardReplica{sh}
	if !r.URL.Query().Has(shardParam) {
		// s0 last: it holds the members, so a change that failed part way is still to
		// be made when the operator tries again.
		all := sh.c.shardList()
		targets = append(all[1:], all[0])
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	var errs []error
	for _, t := range targets {
		if t.index == 0 && len(targets) > 1 && len(errs) > 0 {
			break // the members stay as they are until every shard has changed
		}
		err := t.c.untilLeader(ctx, t, func(l meta.Node) (bool, error) {
			if t.leading() != nil {
				err := change(t, ctx)
				// Leadership lost meanwhile: the next leader makes the change.
				return !errors.Is(err, cluster.ErrNotLeader), err
			}
			return t.c.passOn(ctx, r, t, l, body)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %s: %w", t.name, err))
		}
	}
	return errors.Join(errs...)
}

// passOn sends a membership request to the leader l of shard t, naming the shard; done is
// false when l is not known, did not answer or no longer leads t (see untilLeader).
func (c *clusterNode) passOn(ctx context.Context, r *http.Request, t *shardReplica, l meta.Node, body []byte) (done bool, err error) {
	if l.HTTP == "" {
		return false, errNoLeader
	}
	u := url.URL{Scheme: c.scheme(), Host: l.HTTP, Path: r.URL.Path, RawQuery: url.Values{shardParam: {t.name}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return true, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forwardedHeader, c.s.cfg.NodeID)
	for _, h := range []string{"Authorization", "Cookie", "X-Csrf-Token"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := (&http.Client{Transport: c.peerHTTP}).Do(req)
	if err != nil {
		return false, fmt.Errorf("leader %s at %s did not answer: %w", l.ID, l.HTTP, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return true, nil
	}
	var e struct{ Error string }
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	err = fmt.Errorf("leader %s answered %s: %s", l.ID, resp.Status, e.Error)
	return resp.Header.Get(notLeaderHeader) == "", err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Status is a node's view of the cluster, served at GET /api/v1/cluster. Role and
// Leader are shard s0's (the cluster-wide state's); Groups has the shards this node keeps.
type Status struct {
	NodeID    string      `json:"node_id"`
	ClusterID string      `json:"cluster_id"`
	Role      string      `json:"role"` // "leader" or "follower"
	Leader    meta.Node   `json:"leader"`
	Nodes     []meta.Node `json:"nodes"`
	// Shards is the cluster's shard count; Replicas how many nodes keep each (0: every
	// node). Groups has the shards this node keeps, s0 first; Elsewhere the others, as
	// their leaders told this node (Role "none"; CommitIndex is what the leader had
	// applied, and the lags are measured against it).
	Shards    int           `json:"shards"`
	Replicas  int           `json:"replicas"`
	Groups    []GroupStatus `json:"groups"`
	Elsewhere []GroupStatus `json:"elsewhere,omitempty"`
	// Gone is the members that have not answered this node for replace_after: their
	// shards are kept by other nodes until they are back.
	Gone []string `json:"gone,omitempty"`
	// ReplicaError is set when this node could not apply a committed entry: it will not
	// lead the shard until it is replaced.
	ReplicaError string `json:"replica_error,omitempty"`
	// Disk is the free space of this node's data directory.
	Disk DiskStatus `json:"disk"`
}

// DiskStatus is the free space of a node's data directory, and the reserve below which
// its shards refuse publishes.
type DiskStatus struct {
	FreeBytes    int64  `json:"free_bytes"`
	TotalBytes   int64  `json:"total_bytes"`
	ReserveBytes int64  `json:"reserve_bytes"`
	Error        string `json:"error,omitempty"`
}

// Low reports whether the free space is below the reserve.
func (d DiskStatus) Low() bool { return d.Error == "" && d.FreeBytes < d.ReserveBytes }

// GroupStatus is one Raft group (a shard) as this node sees it.
type GroupStatus struct {
	Name string `json:"name"`
	// Role is this node's: "leader" while it serves the shard, else "follower".
	Role              string           `json:"role"`
	Leader            meta.Node        `json:"leader"`
	State             string           `json:"state"`
	Term              uint64           `json:"term"`
	FirstLogIndex     uint64           `json:"first_log_index"`
	LastLogIndex      uint64           `json:"last_log_index"`
	CommitIndex       uint64           `json:"commit_index"`
	AppliedIndex      uint64           `json:"applied_index"`
	LastSnapshotIndex uint64           `json:"last_snapshot_index"`
	LastContactMs     int64            `json:"last_contact_ms,omitempty"`
	Servers           []cluster.Server `json:"servers"`
	// Followers is the leader's view of each other member.
	Followers []cluster.FollowerStats `json:"followers,omitempty"`
	// LeadingSinceMs is when this node last became leader, on the leader.
	LeadingSinceMs int64  `json:"leading_since_ms,omitempty"`
	ReplicaError   string `json:"replica_error,omitempty"`
	// Stalled is set while this node's replica cannot write a committed entry (a full
	// disk): it applies nothing more until it can, then catches up by itself.
	Stalled string `json:"stalled,omitempty"`
	// Replicas is every member's replica as it last told this node (this node's own
	// included), with its lag behind this node's commit index: on the leader, each
	// follower's lag.
	Replicas []ReplicaStatus `json:"replicas"`
}

// ReplicaStatus is one member's replica of a group.
type ReplicaStatus struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
	// Reachable is whether the member answered this node within the last few seconds.
	Reachable    bool   `json:"reachable"`
	State        string `json:"state,omitempty"`
	Term         uint64 `json:"term,omitempty"`
	LastLogIndex uint64 `json:"last_log_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// Lag is this node's commit index minus the member's applied index (0 if ahead).
	Lag        uint64 `json:"lag"`
	LastSeenMs int64  `json:"last_seen_ms,omitempty"`
	Error      string `json:"error,omitempty"`
}

// peerStale is how old a peer's answer may be for the peer to count as reachable.
const peerStale = 3 * peerPollInterval

func (sh *shardReplica) status() GroupStatus {
	st := sh.group.Stats()
	gs := GroupStatus{
		Name: st.Group, Role: "follower", Leader: sh.leaderAddrs(), State: st.State, Term: st.Term,
		FirstLogIndex: st.FirstLogIndex, LastLogIndex: st.LastLogIndex, CommitIndex: st.CommitIndex,
		// What the replica has applied, not what raft has handed it.
		AppliedIndex:      sh.store.AppliedIndex(),
		LastSnapshotIndex: st.LastSnapshotIndex, Servers: st.Servers, Followers: st.Followers,
	}
	if !st.LastContact.IsZero() {
		gs.LastContactMs = st.LastContact.UnixMilli()
	}
	sh.mu.Lock()
	if sh.mu.leading != nil {
		gs.Role = "leader"
		gs.LeadingSinceMs = sh.mu.since.UnixMilli()
	}
	sh.mu.Unlock()
	if err := sh.store.Broken(); err != nil {
		gs.ReplicaError = err.Error()
	}
	if err := sh.store.Stalled(); err != nil {
		gs.Stalled = err.Error()
	}
	lag := func(applied uint64) uint64 { return st.CommitIndex - min(applied, st.CommitIndex) }
	for _, srv := range st.Servers {
		r := ReplicaStatus{ID: srv.ID, Voter: srv.Voter}
		if srv.ID == st.Node {
			r.Reachable, r.State, r.Term, r.LastLogIndex, r.AppliedIndex = true, st.State, st.Term, st.LastLogIndex, gs.AppliedIndex
			r.Lag, r.LastSeenMs = lag(gs.AppliedIndex), nowMs()
		} else if v, ok := sh.c.peerBook.get(srv.ID); ok {
			ri := v.info.Groups[sh.name]
			r.State, r.Term, r.LastLogIndex, r.AppliedIndex, r.Error = ri.State, ri.Term, ri.LastLogIndex, ri.AppliedIndex, v.err
			if !v.at.IsZero() {
				r.LastSeenMs, r.Lag = v.at.UnixMilli(), lag(ri.AppliedIndex)
				r.Reachable = time.Since(v.at) < peerStale
			}
		}
		gs.Replicas = append(gs.Replicas, r)
	}
	return gs
}

func (c *clusterNode) status() Status {
	st := Status{NodeID: c.s.cfg.NodeID, ClusterID: c.s.cfg.ClusterID, Shards: c.nShards, Replicas: c.replicaCount()}
	var recorded []meta.Node // every kept shard's leaders record their addresses in it
	for _, sh := range c.shardList() {
		kept := sh.hosted() && sh.reading(func() {
			sh.store.ReadMeta(func(ms *meta.Store) error {
				nodes, _ := ms.Nodes()
				recorded = append(recorded, nodes...)
				return nil
			})
		})
		if !kept {
			st.Elsewhere = append(st.Elsewhere, sh.elsewhereStatus())
			continue
		}
		gs := sh.status() // reads no more than positions from the store
		st.Groups = append(st.Groups, gs)
		if gs.ReplicaError != "" && st.ReplicaError == "" {
			st.ReplicaError = "shard " + gs.Name + ": " + gs.ReplicaError
		}
	}
	st.Role, st.Leader = st.Groups[0].Role, st.Groups[0].Leader
	st.Disk = c.disk()
	if c.s.cfg.ReplaceAfter > 0 {
		for _, m := range c.members() {
			if c.longGone(m.ID) {
				st.Gone = append(st.Gone, m.ID)
			}
		}
	}
	// Every shard's leader records its addresses in that shard: gather them.
	newest := map[string]meta.Node{}
	newest[c.s.cfg.NodeID] = meta.Node{ID: c.s.cfg.NodeID, GRPC: c.s.GRPCAddr(), HTTP: c.s.HTTPAddr(), UpdatedAtMs: nowMs()}
	c.peerBook.mu.Lock()
	for id, v := range c.peerBook.peers {
		if !v.at.IsZero() {
			newest[id] = v.info.Node
		}
	}
	c.peerBook.mu.Unlock()
	for _, n := range recorded {
		if n.UpdatedAtMs >= newest[n.ID].UpdatedAtMs {
			newest[n.ID] = n
		}
	}
	for _, n := range newest {
		st.Nodes = append(st.Nodes, n)
	}
	slices.SortFunc(st.Nodes, func(a, b meta.Node) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// ClusterStatus is the node's view of the cluster; ok is false on a single node.
func (s *Server) ClusterStatus() (Status, bool) {
	if s.node == nil {
		return Status{}, false
	}
	return s.node.status(), true
}

// replicasText says how many nodes keep each shard.
func replicasText(replicas int) string {
	if replicas == 0 {
		return "every node"
	}
	return fmt.Sprintf("%d nodes", replicas)
}

// disk reads the free space of the data directory (through shard s0's replica, whose
// directory is the data directory: every shard's is on the same file system).
func (c *clusterNode) disk() DiskStatus {
	sh := c.shard(0)
	if sh == nil || sh.store == nil {
		return DiskStatus{Error: "no replica open"}
	}
	free, total, reserve, err := sh.store.DiskFree()
	d := DiskStatus{FreeBytes: free, TotalBytes: total, ReserveBytes: reserve}
	if err != nil {
		d.Error = err.Error()
	}
	return d
}

// unready lists why this node cannot serve as it should, for /healthz and /readyz: a
// kept shard without a known leader, a replica that cannot write, a disk below its
// reserve. Empty while all is well.
func (c *clusterNode) unready() []string {
	st := c.status()
	var why []string
	for _, g := range st.Groups {
		if g.Leader.ID == "" {
			why = append(why, fmt.Sprintf("shard %s has no leader", g.Name))
		}
		if g.Stalled != "" {
			why = append(why, fmt.Sprintf("shard %s: %s", g.Name, g.Stalled))
		}
		if g.ReplicaError != "" {
			why = append(why, fmt.Sprintf("shard %s: %s", g.Name, g.ReplicaError))
		}
	}
	if st.Disk.Low() {
		why = append(why, fmt.Sprintf("disk: %d MiB free, below the reserve of %d MiB: publishes are refused", st.Disk.FreeBytes>>20, st.Disk.ReserveBytes>>20))
	}
	return why
}
