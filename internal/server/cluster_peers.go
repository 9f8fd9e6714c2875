package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
	"github.com/dmqio/dmq/internal/shard"
)

// Every node tells the others its client addresses and where each of its replicas is
// (cluster.Node.ServeInfo, over the cluster port), and asks them every peerPollInterval.
// From the answers a leader knows each follower's position, hence its lag, which
// hashicorp/raft does not tell it; and every node knows every node's addresses, also of
// nodes that never led a shard.

// peerPollInterval is how often a node asks the others.
const peerPollInterval = time.Second

// nodeInfo is what a node says about itself.
type nodeInfo struct {
	meta.Node
	// Shards is the shard count the node was started with.
	Shards int `json:"shards"`
	// Groups has the shards this node keeps.
	Groups map[string]replicaInfo `json:"groups"`
	// Seen is the s0 applied index each other member last told this node (since it
	// started): a node that lost its data is told it had some (refuseLostMember).
	Seen map[string]uint64 `json:"seen,omitempty"`
}

// replicaInfo is one replica's position.
type replicaInfo struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// Servers is the group's members as the replica knows them.
	Servers []cluster.Server `json:"servers"`
}

// peerView is what this node last heard from a peer.
type peerView struct {
	info nodeInfo
	at   time.Time // when; zero if never
	err  string    // the last request's error, if it failed
}

// peerBook keeps the peers' answers.
type peerBook struct {
	mu    sync.Mutex
	peers map[string]peerView // by node id
}

func (b *peerBook) set(id string, v peerView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v.err != "" { // keep what was heard before, with the error
		old := b.peers[id]
		old.err = v.err
		v = old
	}
	b.peers[id] = v
}

func (b *peerBook) get(id string) (peerView, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.peers[id]
	return v, ok
}

// selfInfo is this node's answer.
func (c *clusterNode) selfInfo() []byte {
	info := nodeInfo{Node: meta.Node{ID: c.s.cfg.NodeID, GRPC: c.s.GRPCAddr(), HTTP: c.s.HTTPAddr(), UpdatedAtMs: nowMs()},
		Shards: c.nShards, Groups: map[string]replicaInfo{}}
	for _, sh := range c.shardList() {
		if !sh.hosted() {
			continue
		}
		st := sh.group.Stats()
		ri := replicaInfo{State: st.State, Term: st.Term, LastLogIndex: st.LastLogIndex, AppliedIndex: sh.store.AppliedIndex()}
		ri.Servers = st.Servers
		info.Groups[sh.name] = ri
	}
	c.peerBook.mu.Lock()
	for id, v := range c.peerBook.peers {
		if ri, ok := v.info.Groups[shard.Meta]; ok && ri.AppliedIndex > 0 {
			if info.Seen == nil {
				info.Seen = map[string]uint64{}
			}
			info.Seen[id] = ri.AppliedIndex
		}
	}
	c.peerBook.mu.Unlock()
	b, _ := json.Marshal(info)
	return b
}

// pollPeers asks every other member for its info (every peerPollInterval).
func (c *clusterNode) pollPeers() {
	members := map[string]string{} // id → cluster address
	for _, sh := range c.shardList() {
		if !sh.hosted() {
			continue
		}
		for _, srv := range sh.group.Stats().Servers {
			if srv.ID != c.s.cfg.NodeID {
				members[srv.ID] = srv.Addr
			}
		}
	}
	var wg sync.WaitGroup
	for id, addr := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), peerPollInterval)
			defer cancel()
			b, err := c.node.PeerInfo(ctx, addr)
			var info nodeInfo
			if err == nil {
				err = json.Unmarshal(b, &info)
			}
			if err == nil && info.ID != id {
				info = nodeInfo{}
				err = errPeerID
			}
			if err != nil {
				c.peerBook.set(id, peerView{err: err.Error()})
				return
			}
			c.peerBook.set(id, peerView{info: info, at: time.Now()})
		}()
	}
	wg.Wait()
}

var errPeerID = errors.New("the node at that address has another id")

// peerAddrs returns what a peer said its client addresses are (ok false if it never
// answered).
func (c *clusterNode) peerAddrs(id string) (meta.Node, bool) {
	v, ok := c.peerBook.get(id)
	if !ok || v.at.IsZero() {
		return meta.Node{}, false
	}
	return v.info.Node, true
}

// refuseLostMember, on a node that starts with no cluster state and a peers list (it
// would bootstrap the cluster with them), asks the peers about the cluster they are in,
// and refuses to start when they already run one that this node cannot take its place
// in: one that does not count it as a member, or in which its replica held data (a
// peer saw it applied), which it has lost. Such a node would start an empty cluster state
// of its own and call elections for ever, or worse, vote for entries it no longer holds.
// The peers that do not answer (the cluster is being created, they start later) are not
// counted; neither are the nodes' memories lost in restarts.
func refuseLostMember(node *cluster.Node, self string, peers []cluster.Peer) error {
	type answer struct {
		peer cluster.Peer
		info nodeInfo
		err  error
	}
	answers := make(chan answer, len(peers))
	asked := 0
	for _, p := range peers {
		if p.ID == self {
			continue
		}
		asked++
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			a := answer{peer: p}
			b, err := node.PeerInfo(ctx, p.Addr)
			if err == nil {
				err = json.Unmarshal(b, &a.info)
			}
			a.err = err
			answers <- a
		}()
	}
	remedy := fmt.Sprintf("to replace it, remove it (dmq cluster remove-node %s --http <a live node's HTTP address>), "+
		"start this node with --join instead of --peers (its data directory empty), then add it (dmq cluster add-node %s <its cluster address> --http ...): "+
		"it then receives the cluster's data", self, self)
	var refusal error
	for range asked {
		a := <-answers
		if a.err != nil || a.info.ID != a.peer.ID || refusal != nil {
			continue
		}
		if n := a.info.Seen[self]; n > 0 {
			refusal = fmt.Errorf("node %s starts with an empty data directory, but the cluster it is a member of runs and this node's replica there held data "+
				"(%s at %s saw it at applied index %d of s0): its data is lost, and a node must not take its old place without it; %s",
				self, a.peer.ID, a.peer.Addr, n, remedy)
			continue
		}
		s0 := a.info.Groups[shard.Meta]
		if len(s0.Servers) > 0 && !slices.ContainsFunc(s0.Servers, func(s cluster.Server) bool { return s.ID == self }) {
			var ids []string
			for _, s := range s0.Servers {
				ids = append(ids, s.ID)
			}
			refusal = fmt.Errorf("node %s starts with an empty data directory and --peers, but %s at %s runs a cluster whose members are %s, not this node: %s",
				self, a.peer.ID, a.peer.Addr, strings.Join(ids, ", "), remedy)
		}
	}
	return refusal
}
