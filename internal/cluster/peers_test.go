package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Peer
		err      string // substring of the error; empty: success
	}{
		{"empty", "", nil, ""},
		{"three", "n1=127.0.0.1:7431, n2=127.0.0.1:7432,n3=host3:7431",
			[]Peer{{"n1", "127.0.0.1:7431"}, {"n2", "127.0.0.1:7432"}, {"n3", "host3:7431"}}, ""},
		{"ipv6", "n1=[::1]:7431", []Peer{{"n1", "[::1]:7431"}}, ""},
		{"duplicate id", "n1=127.0.0.1:1,n1=127.0.0.1:2", nil, `names node "n1" twice`},
		{"duplicate address", "n1=127.0.0.1:1,n2=127.0.0.1:1", nil, `gives address 127.0.0.1:1 to both "n1" and "n2"`},
		{"no equals", "n1", nil, "want id=host:port"},
		{"no port", "n1=127.0.0.1", nil, "bad address"},
		{"no host", "n1=:7431", nil, "no host"},
		{"bad port", "n1=h:99999", nil, "port must be a number"},
		{"bad id", "n 1=h:1", nil, "node id"},
		{"empty id", "=h:1", nil, "empty node id"},
		{"trailing comma", "n1=h:1,", nil, "entry 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePeers(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePeers(%q) error = %v, want one containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePeers(%q): %v", tc.in, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParsePeers(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("ParsePeers(%q) = %v, want %v", tc.in, got, tc.want)
				}
			}
			if tc.in != "" {
				if again, err := ParsePeers(FormatPeers(got)); err != nil || len(again) != len(got) {
					t.Fatalf("ParsePeers(FormatPeers(%v)) = %v, %v", got, again, err)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	peers := []Peer{{"n1", "127.0.0.1:7431"}, {"n2", "127.0.0.1:7432"}}
	base := func() Config {
		return Config{ClusterID: "c", NodeID: "n1", DataDir: "/tmp/x", ListenAddr: "127.0.0.1:7431", Peers: peers}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"ok", func(*Config) {}, ""},
		{"single node", func(c *Config) { c.Peers = nil }, ""},
		{"self missing", func(c *Config) { c.NodeID = "n3" }, `node "n3" is not in the peers list`},
		{"no cluster id", func(c *Config) { c.ClusterID = "" }, "empty cluster id"},
		{"bad node id", func(c *Config) { c.NodeID = "../n1" }, "node id"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data dir"},
		{"bad listen", func(c *Config) { c.ListenAddr = "7431" }, "listen address"},
		{"advertise differs", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:7431" }, "advertises 10.0.0.1:7431 but the peers list gives it 127.0.0.1:7431"},
		{"duplicate peer", func(c *Config) { c.Peers = append(peers, Peer{"n1", "127.0.0.1:7433"}) }, "twice"},
		{"join with peers", func(c *Config) { c.Join = true }, "joining node takes no peers"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = DefaultHeartbeatTimeout * 2 }, "leader lease timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			_, err := New(cfg)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// TestNewStartsNothing: New touches no file; Start creates the identity.
func TestNewStartsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, err := New(Config{ClusterID: "c", NodeID: "n1", DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("New created %s (stat: %v)", dir, err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if _, err := os.Stat(filepath.Join(dir, "raft", "identity")); err != nil {
		t.Fatalf("Start wrote no identity: %v", err)
	}
}
