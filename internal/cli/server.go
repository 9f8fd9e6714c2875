package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/server"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newServerCmd(e *env) *cobra.Command {
	var configPath string
	def := config.Default()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a broker with embedded storage",
		Long: `Run a broker. Settings come from the defaults, then the config file
(--config), then DMQ_* environment variables (DMQ_DATA, DMQ_LISTEN, DMQ_HTTP,
DMQ_NO_SYNC, ...), then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			if err := applyFlags(cmd.Flags(), &cfg); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return runServer(cmd.Context(), e, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML config file")
	f.String("data", def.DataDir, "data directory")
	f.String("listen", def.Listen, "gRPC listen address")
	f.String("http", def.HTTP, "HTTP listen address (health, metrics, console)")
	f.StringSlice("http-allowed-hosts", nil, "more names the HTTP port answers to as Host, beside localhost and its own addresses (DNS rebinding defence; \"*\": any)")
	f.Bool("no-sync", false, "ack publishes before fsync (faster; loses recent messages on power loss)")
	f.Int("max-body-bytes", def.MaxBodyBytes, "largest accepted message body")
	f.Int64("segment-bytes", def.SegmentBytes, "log segment size")
	f.Duration("ack-timeout", def.AckTimeout, "default redelivery timeout of new groups")
	f.Duration("retention-age", def.RetentionAge, "keep consumed messages this long")
	f.Int64("retention-bytes", 0, "keep at most this many consumed bytes per topic (0: no limit)")
	f.Duration("retention-interval", def.RetentionInterval, "how often retention removes old segments")
	f.Duration("dedupe-window", def.DedupeWindow, "how long topics detect retransmitted duplicates")
	f.Duration("max-delay", def.MaxDelay, "longest accepted delay of a delayed message")
	f.StringSlice("auto-approve-envs", def.AutoApproveEnvs, "environments whose topics are approved on creation (others wait for an approval)")
	f.Bool("allow-self-approval", false, "let a topic's requester approve it")
	f.Duration("heartbeat-interval", def.HeartbeatInterval, "how often SDK clients announce themselves")
	f.Duration("client-timeout", def.ClientTimeout, "how long without a heartbeat before a client is offline")
	f.Duration("abandoned-group-after", def.AbandonedGroupAfter, "report a group without members as abandoned once its oldest unacked message is this old")
	f.Duration("client-retention", def.ClientRetention, "how long an offline client stays in the client registry")
	f.String("server-name", "", "name of this broker in per-minute statistics (default: host name)")
	f.Duration("stats-retention", def.StatsRetention, "how long per-minute statistics are kept")
	f.Bool("no-trace", false, "do not record message traces")
	f.Duration("trace-retention", def.TraceRetention, "how long message traces are kept")
	f.Int64("memory-limit", def.MemoryLimit, "soft memory limit in bytes for the garbage collector (0: none)")
	f.String("log-level", def.LogLevel, "debug, info, warn or error")
	f.Bool("auth", false, "require a token on every gRPC call (dmq token create)")
	f.Bool("insecure", false, "allow listening beyond loopback without authentication")
	f.String("tls-cert", "", "PEM certificate: serve both ports over TLS")
	f.String("tls-key", "", "PEM private key of --tls-cert")
	f.String("tls-client-ca", "", "PEM CA: require client certificates it signed (mutual TLS)")
	f.String("node-id", def.NodeID, "this node's id in the cluster (n1, n2, ...); alone, it is its cluster's only voter")
	f.Bool("standalone", false, "run without Raft: a little faster, but cannot grow into a cluster without a restart")
	f.String("cluster-id", def.ClusterID, "name of the cluster (a data directory keeps the first)")
	f.String("cluster-listen", def.ClusterListen, "address of this node's cluster (Raft) listener")
	f.String("peers", "", "every node of the cluster as id=host:port of its cluster listener, this one included")
	f.Bool("join", false, "start a new node that waits to be added to a running cluster (dmq cluster add-node)")
	f.String("cluster-ca", "", "PEM CA of every node's --tls-cert: mutual TLS on the cluster port, verified calls between nodes")
	f.Int("replicas", def.Replicas, "cluster: how many nodes keep each shard, 1, 3 or 5 (0: every node; s0 is on every node), when the cluster is created (dmq cluster set-replicas changes it)")
	f.Duration("replace-after", def.ReplaceAfter, "cluster: copy the shards of a node unreachable this long to other nodes (0: only remove-node moves them)")
	f.Int("shards", def.Shards, "cluster: how many Raft groups the topics are spread over, each with its own leader (fixed at creation)")
	f.Int64("snapshot-entries", 0, "cluster: Raft log entries between snapshots (0: 8192)")
	f.Duration("snapshot-interval", 0, "cluster: how often to check whether a snapshot is due (0: 2m)")
	f.Int64("trailing-entries", 0, "cluster: log entries a snapshot keeps for followers behind (0: 10240)")
	f.Int64("snapshot-bytes", def.SnapshotBytes, "cluster: also snapshot a shard once this many bytes of entries were applied since the last snapshot, bounding what a restart replays (0: by entries only)")
	f.Int64("disk-reserve", 0, "cluster: free bytes of the data directory's disk below which publishes are refused as disk full (0: two segments, or 1% of the disk up to 1 GiB)")
	return cmd
}

// applyFlags copies every flag the user set onto the matching config field
// (flag name = yaml tag with '-' for '_').
func applyFlags(fs *pflag.FlagSet, cfg *config.Config) error {
	v := reflect.ValueOf(cfg).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("yaml")
		if name == "-" {
			continue
		}
		flagName := ""
		for _, r := range name {
			if r == '_' {
				r = '-'
			}
			flagName += string(r)
		}
		fl := fs.Lookup(flagName)
		if fl == nil || !fl.Changed {
			continue
		}
		if err := config.SetField(v.Field(i), fl.Value.String()); err != nil {
			return fmt.Errorf("--%s: %w", flagName, err)
		}
	}
	return nil
}

func runServer(ctx context.Context, e *env, cfg config.Config) error {
	// A soft memory limit makes the garbage collector work harder only near
	// the limit, instead of always (GOGC=50 cut the peak RSS of scheduling
	// 1M delayed messages from 281 to 214 MB but cost about a quarter of the
	// publish+consume throughput). Off by default; GOMEMLIMIT wins.
	if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	cfg.Version = Version
	s, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	durability := "fsync before ack"
	if cfg.NoSync {
		durability = "NO fsync before ack (--no-sync)"
	}
	fmt.Fprintf(e.stdout, "dmq %s listening: gRPC %s, HTTP http://%s/ (data %s, %s)\n", Version, s.GRPCAddr(), s.HTTPAddr(), cfg.DataDir, durability)
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "dmq: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}
