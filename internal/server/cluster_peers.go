package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
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
