package meta

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
)

// Node is a cluster node's client-facing addresses. A node writes its own record each
// time it becomes the leader; followers read the leader's to point clients at it.
//
//	nd/<node id> → Node as JSON
type Node struct {
	ID          string `json:"id"`
	GRPC        string `json:"grpc"`
	HTTP        string `json:"http"`
	UpdatedAtMs int64  `json:"updated_at_ms"`
}

func nodeKey(id string) []byte { return append([]byte("nd/"), id...) }

// PutNode stores a node's record.
func (s *Store) PutNode(n Node) error {
	v, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return s.set(nodeKey(n.ID), v, pebble.Sync)
}

// GetNode returns a node's record or ErrNotFound.
func (s *Store) GetNode(id string) (Node, error) {
	v, closer, err := s.db.Get(nodeKey(id))
	if err == pebble.ErrNotFound {
		return Node{}, ErrNotFound
	}
	if err != nil {
		return Node{}, err
	}
	defer closer.Close()
	var n Node
	if err := json.Unmarshal(v, &n); err != nil {
		return Node{}, fmt.Errorf("decode node record: %w", err)
	}
	return n, nil
}

// Nodes returns every node record, sorted by id.
func (s *Store) Nodes() ([]Node, error) {
	var out []Node
	err := s.scan([]byte("nd/"), func(_, v []byte) error {
		var n Node
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("decode node record: %w", err)
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

// The node an operator chose to lead the shard whose store this is (dmq cluster
// transfer-leader --to), which the leader balancer keeps instead of its own choice:
//
//	nd-pinned → node id
var pinnedKey = []byte("nd-pinned")

// SetPinnedLeader records the node chosen to lead this shard ("" forgets the choice).
func (s *Store) SetPinnedLeader(id string) error {
	if id == "" {
		return s.del(pinnedKey, pebble.Sync)
	}
	return s.set(pinnedKey, []byte(id), pebble.Sync)
}

// PinnedLeader returns the node chosen to lead this shard, or "".
func (s *Store) PinnedLeader() (string, error) {
	v, closer, err := s.db.Get(pinnedKey)
	if err == pebble.ErrNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer closer.Close()
	return string(v), nil
}

// replicasKey holds, in shard s0, how many nodes keep each shard (dmq cluster
// set-replicas): cl/replicas → decimal.
var replicasKey = []byte("cl/replicas")

// SetReplicas records how many nodes keep each shard but s0 (0: every node).
func (s *Store) SetReplicas(n int) error {
	return s.set(replicasKey, []byte(strconv.Itoa(n)), pebble.Sync)
}

// Replicas returns how many nodes keep each shard, and whether it was recorded.
func (s *Store) Replicas() (n int, ok bool, err error) {
	v, closer, err := s.db.Get(replicasKey)
	if err == pebble.ErrNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	n, err = strconv.Atoi(string(v))
	if err != nil {
		return 0, false, fmt.Errorf("decode the replicas per shard %q: %w", v, err)
	}
	return n, true, nil
}
