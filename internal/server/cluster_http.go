package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
)

// The HTTP side of a cluster node: what every node serves (its status), what a follower
// serves (health, redirects to the leader) and the leader's membership endpoints.

// ServeHTTP serves the current role's handler.
func (c *clusterNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*c.http.Load()).ServeHTTP(w, r)
}

// routes adds what every node serves, leader or not.
func (c *clusterNode) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/cluster", c.handleStatus)
}

// leaderRoutes adds the routes of the leader: membership changes, for administrators.
func (c *clusterNode) leaderRoutes(mux *http.ServeMux, adminOnly func(http.Handler) http.Handler) {
	c.routes(mux)
	mux.Handle("POST /api/v1/cluster/nodes", adminOnly(http.HandlerFunc(c.handleAddNode)))
	mux.Handle("DELETE /api/v1/cluster/nodes/{id}", adminOnly(http.HandlerFunc(c.handleRemoveNode)))
	mux.Handle("POST /api/v1/cluster/leader", adminOnly(http.HandlerFunc(c.handleTransfer)))
}

// membershipTimeout bounds a membership change (a new voter must catch up first).
const membershipTimeout = time.Minute

// handleAddNode adds a voter: {"id": "n4", "addr": "host:port"} (its cluster listener).
// The node, started with --join, receives a snapshot and the log.
func (c *clusterNode) handleAddNode(w http.ResponseWriter, r *http.Request) {
	var req struct{ ID, Addr string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be {\"id\": ..., \"addr\": ...}: " + err.Error()})
		return
	}
	if _, _, err := net.SplitHostPort(req.Addr); err != nil || req.ID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("need a node id and its cluster address as host:port (got id %q, addr %q)", req.ID, req.Addr)})
		return
	}
	for _, srv := range c.group.Stats().Servers {
		if srv.ID == req.ID && srv.Addr != req.Addr {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("node %s is already a member at %s: remove it first to move it", req.ID, srv.Addr)})
			return
		}
		if srv.ID != req.ID && srv.Addr == req.Addr {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("address %s belongs to member %s", req.Addr, srv.ID)})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := c.group.AddVoter(ctx, req.ID, req.Addr); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	c.s.logger.Info("cluster: node added", "node", req.ID, "addr", req.Addr)
	writeJSON(w, http.StatusOK, c.status())
}

// handleRemoveNode removes a member (for a dead node; a live one stops being a voter).
func (c *clusterNode) handleRemoveNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found := false
	for _, srv := range c.group.Stats().Servers {
		found = found || srv.ID == id
	}
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("node %q is not a member", id)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := c.group.RemoveServer(ctx, id); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	c.s.logger.Info("cluster: node removed", "node", id)
	writeJSON(w, http.StatusOK, c.status())
}

// handleTransfer hands leadership to {"to": "n2"} (empty: the most up-to-date voter).
func (c *clusterNode) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var req struct{ To string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be {\"to\": \"node id or empty\"}: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := c.group.TransferLeadership(ctx, req.To); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	c.s.logger.Info("cluster: leadership transferred", "to", req.To)
	writeJSON(w, http.StatusOK, map[string]any{"transferred": true, "to": req.To})
}

func (c *clusterNode) handleFollowerHealth(w http.ResponseWriter, r *http.Request) {
	code := http.StatusOK
	if r.URL.Path == "/readyz" {
		code = http.StatusServiceUnavailable // not serving clients
	}
	l := c.leaderAddrs()
	writeJSON(w, code, map[string]any{"status": "ok", "role": "follower", "leader": l.ID, "leader_http": l.HTTP})
}

// redirect sends a follower's HTTP requests to the leader's.
func (c *clusterNode) redirect(w http.ResponseWriter, r *http.Request) {
	l := c.leaderAddrs()
	if l.HTTP == "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": fmt.Sprintf("node %s is not the leader and no leader is known yet", c.s.cfg.NodeID)})
		return
	}
	scheme := "http"
	if c.s.tc != nil {
		scheme = "https"
	}
	http.Redirect(w, r, scheme+"://"+l.HTTP+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Status is a node's view of the cluster, served at GET /api/v1/cluster.
type Status struct {
	NodeID    string        `json:"node_id"`
	ClusterID string        `json:"cluster_id"`
	Role      string        `json:"role"` // "leader" or "follower"
	Leader    meta.Node     `json:"leader"`
	Nodes     []meta.Node   `json:"nodes"`
	Groups    []GroupStatus `json:"groups"`
	// ReplicaError is set when this node could not apply a committed entry: it will not
	// lead until it is replaced.
	ReplicaError string `json:"replica_error,omitempty"`
}

// GroupStatus is one Raft group as this node sees it.
type GroupStatus struct {
	Name              string           `json:"name"`
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
	LeadingSinceMs int64 `json:"leading_since_ms,omitempty"`
}

func (c *clusterNode) status() Status {
	st := c.group.Stats()
	gs := GroupStatus{
		Name: st.Group, State: st.State, Term: st.Term, FirstLogIndex: st.FirstLogIndex, LastLogIndex: st.LastLogIndex,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastSnapshotIndex: st.LastSnapshotIndex,
		Servers: st.Servers, Followers: st.Followers,
	}
	// What the replica has applied, not what raft has handed it.
	gs.AppliedIndex = c.store.AppliedIndex()
	if !st.LastContact.IsZero() {
		gs.LastContactMs = st.LastContact.UnixMilli()
	}
	role := "follower"
	c.mu.Lock()
	if c.mu.leading != nil {
		role = "leader"
		gs.LeadingSinceMs = c.mu.since.UnixMilli()
	}
	c.mu.Unlock()
	nodes, _ := c.store.Meta().Nodes()
	st2 := Status{NodeID: c.s.cfg.NodeID, ClusterID: c.s.cfg.ClusterID, Role: role, Leader: c.leaderAddrs(), Nodes: nodes, Groups: []GroupStatus{gs}}
	if err := c.store.Broken(); err != nil {
		st2.ReplicaError = err.Error()
	}
	return st2
}

func (c *clusterNode) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, c.status())
}

// ClusterStatus is the node's view of the cluster; ok is false on a single node.
func (s *Server) ClusterStatus() (Status, bool) {
	if s.node == nil {
		return Status{}, false
	}
	return s.node.status(), true
}
