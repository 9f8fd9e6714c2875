// Package config holds the broker server's settings: defaults, validation,
// and loading from a YAML file and DMQ_* environment variables. Command-line
// flags are applied on top by cmd/dmq (through internal/cli).
package config

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/cluster/transport"
	"github.com/dmqio/dmq/internal/shard"
	"gopkg.in/yaml.v3"
)

// Config is the server configuration. Each field's yaml tag is also its
// environment variable, upper-cased with a DMQ_ prefix (data → DMQ_DATA).
type Config struct {
	// DataDir is where the broker stores everything.
	DataDir string `yaml:"data"`
	// Listen is the gRPC address.
	Listen string `yaml:"listen"`
	// HTTP is the address of health, metrics and (later) the console.
	HTTP string `yaml:"http"`
	// HTTPAllowedHosts adds names the HTTP port answers to as a request's Host,
	// beside localhost, loopback and this server's own addresses (a defence
	// against DNS rebinding): the names under which people and proxies reach
	// it, such as dmq.example.com. "*" accepts any Host.
	HTTPAllowedHosts []string `yaml:"http_allowed_hosts"`
	// NoSync acks publishes before fsync: faster, loses the last writes on
	// power loss (not on a process crash).
	NoSync bool `yaml:"no_sync"`
	// MaxBodyBytes is the largest message body accepted.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// SegmentBytes is the size at which a topic log starts a new segment.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// AckTimeout is the default redelivery timeout of new groups.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// RetentionAge and RetentionBytes bound what a topic keeps once all its
	// groups have consumed it; RetentionBytes 0 means no size bound.
	RetentionAge   time.Duration `yaml:"retention_age"`
	RetentionBytes int64         `yaml:"retention_bytes"`
	// RetentionInterval is how often retention looks for segments to remove.
	RetentionInterval time.Duration `yaml:"retention_interval"`
	// DedupeWindow is how long a topic remembers client message ids to drop
	// retransmitted duplicates (topics may set their own).
	DedupeWindow time.Duration `yaml:"dedupe_window"`
	// MaxDelay is the longest accepted delay of a delayed message.
	MaxDelay time.Duration `yaml:"max_delay"`
	// AutoApproveEnvs lists the environments (first part of a topic name)
	// whose topics are approved on creation; others wait for an approval.
	AutoApproveEnvs []string `yaml:"auto_approve_envs"`
	// AllowSelfApproval lets a topic's requester approve it.
	AllowSelfApproval bool `yaml:"allow_self_approval"`
	// HeartbeatInterval is how often SDK clients announce themselves;
	// ClientTimeout how long without one before a client counts as offline.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	ClientTimeout     time.Duration `yaml:"client_timeout"`
	// ClientRetention is how long an offline client stays in the client
	// registry before it is forgotten.
	ClientRetention time.Duration `yaml:"client_retention"`
	// AbandonedGroupAfter is how long the oldest unacked message of a group
	// without connected members may wait before the group is reported as
	// abandoned (metric dmq_group_abandoned, the console): it holds messages
	// back from retention for nobody.
	AbandonedGroupAfter time.Duration `yaml:"abandoned_group_after"`
	// ServerName labels this broker's per-minute counters (default: host name).
	ServerName string `yaml:"server_name"`
	// StatsRetention is how long per-minute counters are kept.
	StatsRetention time.Duration `yaml:"stats_retention"`
	// NoTrace turns message tracing off; TraceRetention is how long trace
	// events are kept.
	NoTrace        bool          `yaml:"no_trace"`
	TraceRetention time.Duration `yaml:"trace_retention"`
	// MemoryLimit is a soft limit in bytes for the Go garbage collector (0:
	// none): it collects harder near the limit rather than always.
	MemoryLimit int64 `yaml:"memory_limit"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Auth requires a token on every gRPC call (see package auth).
	Auth bool `yaml:"auth"`
	// Insecure allows listening beyond loopback without authentication.
	Insecure bool `yaml:"insecure"`
	// TLSCert and TLSKey are PEM files that turn on TLS for both ports;
	// TLSClientCA (PEM) also requires client certificates signed by it.
	TLSCert     string `yaml:"tls_cert"`
	TLSKey      string `yaml:"tls_key"`
	TLSClientCA string `yaml:"tls_client_ca"`
	// Every server is a cluster node, by default the only voter of its own
	// cluster (n1, no peers): the broker's storage is the Raft-replicated one
	// from the first start, so a server grows into a cluster by adding nodes
	// (dmq cluster add-node), without a second code path.
	// NodeID is this node's id in the cluster (n1, n2, ...). ClusterID names
	// the cluster; a data directory keeps the first it was started with.
	// ClusterListen is the address other nodes reach this one at (Raft
	// traffic). Peers lists every node as id=host:port of its cluster
	// listener ("n1=10.0.0.1:7431,n2=..."), this one included; all nodes
	// start with the same list. No peers: a cluster of one voter.
	NodeID        string `yaml:"node_id"`
	ClusterID     string `yaml:"cluster_id"`
	ClusterListen string `yaml:"cluster_listen"`
	Peers         string `yaml:"peers"`
	// Standalone runs the broker without Raft: its storage is the topic logs
	// and metadata store alone. It serves 1.1–1.5× the publishes per second
	// on the same machine (docs/benchmarks.md), and cannot be joined: to
	// grow it into a cluster, restart it without standalone (its data is
	// taken over). A cluster node's data directory is refused.
	Standalone bool `yaml:"standalone"`
	// Join starts a new node that waits to be added to a running cluster
	// (dmq cluster add-node) instead of bootstrapping one; it takes no peers.
	Join bool `yaml:"join"`
	// ClusterCA is the PEM CA that signed every node's certificate (TLSCert):
	// with it the cluster port uses mutual TLS (a node presents its
	// certificate and accepts only peers with one the CA signed), and the
	// nodes' calls to each other's client ports are verified against it.
	ClusterCA string `yaml:"cluster_ca"`
	// Shards is how many Raft groups the cluster's topics are spread over (by
	// a hash of their names), each with its own leader: fixed when the
	// cluster is created, the same on every node. 1 keeps every topic in one
	// group.
	Shards int `yaml:"shards"`
	// Replicas is how many nodes keep each shard (its replication factor)
	// when the cluster is created: 0 means every node. The first shard,
	// which holds users, tokens and the other cluster-wide state, is on
	// every node whatever this says. The nodes that create a cluster
	// together must agree on it; afterwards the cluster records it (dmq
	// cluster set-replicas changes it) and a node's own value is ignored.
	Replicas int `yaml:"replicas"`
	// ReplaceAfter is how long a node may be unreachable before the shards it
	// keeps are copied to other nodes (each shard's leader adds the next
	// member as a replica, and removes the dead one once the copy caught up;
	// when the node is back, its shards move back to it). 0: never (only dmq
	// cluster remove-node moves them). Only with replicas below the node count.
	ReplaceAfter time.Duration `yaml:"replace_after"`
	// SnapshotEntries is how many Raft log entries since the last snapshot
	// make a node take one (checked every SnapshotInterval); TrailingEntries
	// how many a snapshot leaves in the log for a follower that is behind.
	// Zero: the defaults (8192 entries, 10s, 10240 entries).
	SnapshotEntries  int64         `yaml:"snapshot_entries"`
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	TrailingEntries  int64         `yaml:"trailing_entries"`
	// SnapshotBytes also makes a node take a snapshot of a shard, as soon as
	// the entries it applied since the last one add up to this many bytes, so
	// that a restart replays at most about this much of the Raft log. 0: only
	// snapshot_entries.
	SnapshotBytes int64 `yaml:"snapshot_bytes"`
	// DiskReserve is the free space, in bytes, of the data directory's file
	// system below which a shard's leader refuses publishes (ResourceExhausted,
	// "disk full"), keeping room for the Raft log's next segment, acks and
	// other metadata. 0: two segments (segment_bytes), or 1% of the file
	// system up to 1 GiB if that is more.
	DiskReserve int64 `yaml:"disk_reserve"`
	// Version is the binary's version, reported to clients; not a setting.
	Version string `yaml:"-"`
	// FS replaces the operating system's file system for every file in the
	// data directory (logs, metadata, Raft state); set by fault tests only,
	// not a setting.
	FS vfs.FS `yaml:"-"`
	// ClusterFaults injects network faults between cluster nodes in one
	// test process (package cluster/transport); not a setting.
	ClusterFaults *transport.Faults `yaml:"-"`
	// WallClock replaces the machine's wall clock for the brokers (see
	// broker.Config); set by tests of clock steps only, not a setting.
	WallClock func() time.Time `yaml:"-"`
}

// Default returns the embedded single-machine defaults.
func Default() Config {
	return Config{
		DataDir:             "./dmq-data",
		Listen:              "127.0.0.1:7420",
		HTTP:                "127.0.0.1:7480",
		MaxBodyBytes:        4 << 20,
		SegmentBytes:        64 << 20,
		AckTimeout:          30 * time.Second,
		RetentionAge:        72 * time.Hour,
		RetentionInterval:   time.Minute,
		DedupeWindow:        2 * time.Minute,
		MaxDelay:            90 * 24 * time.Hour,
		AutoApproveEnvs:     []string{"dev", "test"},
		HeartbeatInterval:   10 * time.Second,
		ClientTimeout:       30 * time.Second,
		ClientRetention:     24 * time.Hour,
		AbandonedGroupAfter: 24 * time.Hour,
		StatsRetention:      30 * 24 * time.Hour,
		TraceRetention:      72 * time.Hour,
		LogLevel:            "info",
		NodeID:              "n1",
		ClusterID:           "dmq",
		Shards:              1,
		ReplaceAfter:        5 * time.Minute,
		ClusterListen:       "127.0.0.1:7431",
		SnapshotBytes:       64 << 20,
	}
}

// Load returns the defaults overlaid with the file at path (if path is not
// empty) and then with DMQ_* environment variables.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// applyEnv sets every field whose DMQ_ variable is set.
func (c *Config) applyEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.Tag.Get("yaml") == "-" {
			continue
		}
		name := "DMQ_" + strings.ToUpper(f.Tag.Get("yaml"))
		s := getenv(name)
		if s == "" {
			continue
		}
		if err := SetField(v.Field(i), s); err != nil {
			return fmt.Errorf("%s=%q: %w", name, s, err)
		}
	}
	return nil
}

// SetField parses s into a string, bool, integer or duration field.
func SetField(f reflect.Value, s string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Type() == reflect.TypeOf([]string(nil)):
		// "a,b" from the environment, "[a,b]" from a string-slice flag.
		s = strings.Trim(s, "[]")
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(append([]string{}, parts...)))
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	default:
		return fmt.Errorf("unsupported setting type %s", f.Type())
	}
	return nil
}

// Validate reports settings that cannot work, naming the setting.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("data: the data directory must be set")
	}
	for name, addr := range map[string]string{"listen": c.Listen, "http": c.HTTP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not a host:port address", name, addr)
		}
		if !c.Auth && !c.Insecure && !Loopback(addr) {
			return fmt.Errorf("%s: %s is reachable beyond this machine and authentication is off: turn it on (auth: true, --auth) or accept the risk with insecure: true (--insecure)", name, addr)
		}
	}
	for _, h := range c.HTTPAllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ,") {
			return fmt.Errorf("http_allowed_hosts: %q is not a host name (such as dmq.example.com, without scheme or path)", h)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("tls_cert and tls_key: give both or neither")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return fmt.Errorf("tls_client_ca: client certificates need TLS (tls_cert and tls_key)")
	}
	if c.MaxBodyBytes < 1 || c.MaxBodyBytes > 64<<20 {
		return fmt.Errorf("max_body_bytes: %d is out of range (1 to 67108864)", c.MaxBodyBytes)
	}
	if c.SegmentBytes < 1<<20 {
		return fmt.Errorf("segment_bytes: %d is below 1 MiB", c.SegmentBytes)
	}
	if c.AckTimeout < 100*time.Millisecond {
		return fmt.Errorf("ack_timeout: %s is below 100ms", c.AckTimeout)
	}
	if c.DedupeWindow <= 0 || c.DedupeWindow > 7*24*time.Hour {
		return fmt.Errorf("dedupe_window: %s is out of range (above 0, at most 168h)", c.DedupeWindow)
	}
	if c.MaxDelay <= 0 || c.MaxDelay > 10*365*24*time.Hour {
		return fmt.Errorf("max_delay: %s is out of range (above 0, at most 10 years)", c.MaxDelay)
	}
	if c.HeartbeatInterval < 10*time.Millisecond || c.ClientTimeout < c.HeartbeatInterval {
		return fmt.Errorf("heartbeat_interval must be at least 10ms and client_timeout at least the interval")
	}
	if c.AbandonedGroupAfter < time.Second {
		return fmt.Errorf("abandoned_group_after: %s is below 1s", c.AbandonedGroupAfter)
	}
	if c.ClientRetention < time.Second {
		return fmt.Errorf("client_retention: %s is below 1s", c.ClientRetention)
	}
	if c.TraceRetention < time.Hour {
		return fmt.Errorf("trace_retention: %s is below 1h", c.TraceRetention)
	}
	if c.StatsRetention < time.Hour {
		return fmt.Errorf("stats_retention: %s is below 1h", c.StatsRetention)
	}
	if c.RetentionInterval < 100*time.Millisecond {
		return fmt.Errorf("retention_interval: %s is below 100ms", c.RetentionInterval)
	}
	if c.RetentionAge <= 0 || c.RetentionBytes < 0 {
		return fmt.Errorf("retention_age must be positive and retention_bytes not negative")
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// CheckReplicas checks a count of nodes to keep each shard on (0: every node).
func CheckReplicas(n int) error {
	if n < 0 || n > 9 {
		return fmt.Errorf("%d is not between 0 (every node) and 9", n)
	}
	if n > 0 && n%2 == 0 {
		return fmt.Errorf("%d is even: a shard on %d nodes survives no more failures than on %d, and needs more of them to agree; use %d or %d", n, n, n-1, n-1, n+1)
	}
	return nil
}

// Clustered reports whether the server runs as a cluster node (every server
// but a standalone one).
func (c *Config) Clustered() bool { return !c.Standalone }

func (c *Config) validateCluster() error {
	if !c.Clustered() {
		if c.Peers != "" || c.Join || c.Shards > 1 || c.Replicas != 0 {
			return fmt.Errorf("standalone: a standalone server is no cluster node: peers, join, shards and replicas do not apply (leave standalone out)")
		}
		return nil
	}
	if c.NodeID == "" {
		return fmt.Errorf("node_id: must not be empty (default n1)")
	}
	if c.ClusterID == "" {
		return fmt.Errorf("cluster_id: must not be empty in cluster mode")
	}
	if _, _, err := net.SplitHostPort(c.ClusterListen); err != nil {
		return fmt.Errorf("cluster_listen: %q is not a host:port address", c.ClusterListen)
	}
	if c.ClusterCA != "" && (c.TLSCert == "" || c.TLSKey == "") {
		return fmt.Errorf("cluster_ca: the cluster port's mutual TLS uses the node's certificate: set tls_cert and tls_key (--tls-cert, --tls-key) too")
	}
	if !c.Insecure && c.ClusterCA == "" && !Loopback(c.ClusterListen) {
		return fmt.Errorf("cluster_listen: %s is reachable beyond this machine without authentication: give the nodes certificates of one CA (--tls-cert, --tls-key, --cluster-ca) for mutual TLS, or keep the port on a private network and accept that with insecure: true (--insecure)", c.ClusterListen)
	}
	if c.Shards < 1 || c.Shards > shard.Max {
		return fmt.Errorf("shards: %d is not between 1 and %d", c.Shards, shard.Max)
	}
	if err := CheckReplicas(c.Replicas); err != nil {
		return fmt.Errorf("replicas: %w", err)
	}
	if c.ReplaceAfter != 0 && c.ReplaceAfter < 3*time.Second {
		return fmt.Errorf("replace_after: %s is below 3s, the time nodes take to notice one another (0 turns replacing off)", c.ReplaceAfter)
	}
	if c.Shards > 1 && c.TLSCert != "" && c.ClusterCA == "" {
		// Calls about one shard reach another node's broker through this one
		// (lists of topics, the console): over TLS the nodes verify each
		// other with the cluster's CA.
		return fmt.Errorf("shards: with TLS, a cluster of %d shards needs the CA of the nodes' certificates (cluster_ca, --cluster-ca): nodes pass calls to each other", c.Shards)
	}
	if c.DiskReserve < 0 {
		return fmt.Errorf("disk_reserve: %d is negative", c.DiskReserve)
	}
	if c.SnapshotEntries < 0 || c.TrailingEntries < 0 || c.SnapshotInterval < 0 || c.SnapshotBytes < 0 {
		return fmt.Errorf("snapshot_entries, snapshot_interval, trailing_entries, snapshot_bytes: must not be negative")
	}
	if c.SnapshotInterval > 0 && c.SnapshotInterval < 10*time.Millisecond {
		return fmt.Errorf("snapshot_interval: %s is below 10ms", c.SnapshotInterval)
	}
	if c.Join && c.Peers != "" {
		return fmt.Errorf("join: a joining node takes no peers list; it learns the members when added (dmq cluster add-node)")
	}
	peers, err := cluster.ParsePeers(c.Peers)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	if len(peers) > 0 {
		found := false
		for _, p := range peers {
			found = found || p.ID == c.NodeID
		}
		if !found {
			return fmt.Errorf("peers: the list does not name this node (%s)", c.NodeID)
		}
	}
	return nil
}

// Loopback reports whether a listen address is reachable only from this
// machine: a loopback IP or localhost (an empty host listens everywhere).
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
