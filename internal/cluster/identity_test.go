package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dmqio/dmq/internal/cluster/transport"
)

func startSingle(t *testing.T, clusterID, nodeID, dir string) (*Node, error) {
	t.Helper()
	n, err := New(Config{ClusterID: clusterID, NodeID: nodeID, DataDir: dir, ListenAddr: "127.0.0.1:0", Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n, n.Start()
}

// TestIdentityMismatchRefused: a data dir records its cluster and node id on first start;
// starting it again under another cluster id or node id is refused and changes nothing.
func TestIdentityMismatchRefused(t *testing.T) {
	dir := t.TempDir()
	n, err := startSingle(t, "c1", "n1", dir)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	g, err := n.OpenGroup(GroupConfig{Name: "meta", FSM: &listFSM{}})
	if err != nil {
		t.Fatalf("OpenGroup: %v", err)
	}
	waitFor(t, 10*time.Second, "single node to lead", func() error {
		if !g.IsLeader() {
			return errors.New("not leader")
		}
		return nil
	})
	if _, err := g.Apply(context.Background(), []byte("x")); err != nil {
		t.Fatalf("Apply on one-voter group: %v", err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	idPath := filepath.Join(dir, "raft", "identity")
	before, err := os.ReadFile(idPath)
	if err != nil {
		t.Fatalf("identity file: %v", err)
	}

	for _, tc := range []struct{ name, cluster, node, mention string }{
		{"other cluster id", "c2", "n1", `"c1"`},
		{"other node id", "c1", "n2", `"n1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := startSingle(t, tc.cluster, tc.node, dir)
			if err == nil {
				n.Shutdown(context.Background())
				t.Fatalf("Start(%s, %s) on %s's data dir succeeded", tc.cluster, tc.node, "c1/n1")
			}
			if !errors.Is(err, ErrIdentityMismatch) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Start error = %v, want ErrIdentityMismatch naming %s", err, tc.mention)
			}
			t.Logf("refused: %v", err)
			after, _ := os.ReadFile(idPath)
			if string(after) != string(before) {
				t.Fatalf("identity file changed from %q to %q", before, after)
			}
		})
	}

	// The right identity starts again, with its state.
	n, err = startSingle(t, "c1", "n1", dir)
	if err != nil {
		t.Fatalf("restart with the right identity: %v", err)
	}
	defer n.Shutdown(context.Background())
	f := &listFSM{}
	g, err = n.OpenGroup(GroupConfig{Name: "meta", FSM: f})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "restarted single node to apply its log", func() error {
		if got, _ := f.state(); len(got) != 1 || got[0] != "x" {
			return errors.New("state not back yet")
		}
		return nil
	})
}

// TestWrongClusterIDRefused: a connection naming another cluster id, or a group the node
// does not host, is refused; the dialer's error names the mismatch and both sides log it.
func TestWrongClusterIDRefused(t *testing.T) {
	var mu sync.Mutex
	var logs []string
	record := func(s string) {
		mu.Lock()
		logs = append(logs, s)
		mu.Unlock()
	}
	logged := func(sub ...string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range logs {
			all := true
			for _, s := range sub {
				all = all && strings.Contains(l, s)
			}
			if all {
				return true
			}
		}
		return false
	}
	n, err := New(Config{ClusterID: "prod", NodeID: "n1", DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Logger: testLogger(t, record)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if _, err := n.OpenGroup(GroupConfig{Name: "meta", FSM: &listFSM{}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, cluster, group string
		status               transport.Status
		mention              string
	}{
		{"wrong cluster id", "staging", "meta", transport.StatusClusterMismatch, `cluster id "staging", this node belongs to cluster "prod"`},
		{"unknown group", "prod", "s7", transport.StatusUnknownGroup, `group "s7" is not hosted on node n1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			m, err := transport.New(transport.Config{ClusterID: tc.cluster, NodeID: "x9", Listener: ln, Logger: testLogger(t, record)})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			l, err := m.Layer(tc.group)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := l.Dial(raft.ServerAddress(n.Addr()), 2*time.Second)
			if err == nil {
				conn.Close()
				t.Fatalf("dial %s naming cluster %s group %s succeeded", n.Addr(), tc.cluster, tc.group)
			}
			var re *transport.RefusedError
			if !errors.As(err, &re) || re.Status != tc.status || !strings.Contains(err.Error(), tc.mention) || re.Peer != "n1" {
				t.Fatalf("dial error = %v, want a refusal %q naming %q from n1", err, tc.status, tc.mention)
			}
			t.Logf("dialer got: %v", err)
			waitFor(t, 5*time.Second, "both sides to log the refusal", func() error {
				if !logged("refused cluster connection", "node=n1", tc.status.String()) {
					return errors.New("acceptor n1 logged nothing")
				}
				if !logged("refused by peer", "node=x9", tc.status.String()) {
					return errors.New("dialer x9 logged nothing")
				}
				return nil
			})
		})
	}
}
