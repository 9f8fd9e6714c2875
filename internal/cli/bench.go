package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/server"
	"github.com/spf13/cobra"
)

// benchOptions are the knobs of `dmq bench`.
type benchOptions struct {
	size, count, inflight, producers, consumers int
	consume, embedded, asJSON, noSync           bool
	topic                                       string
}

// BenchResult is one measured run, printed as text or JSON.
type BenchResult struct {
	Workload      string  `json:"workload"`
	Fsync         bool    `json:"fsync"`
	Messages      int     `json:"messages"`
	Size          int     `json:"size"`
	Producers     int     `json:"producers"`
	Consumers     int     `json:"consumers,omitempty"`
	Seconds       float64 `json:"seconds"`
	MsgsPerSec    float64 `json:"msgs_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	PublishP50Ms  float64 `json:"publish_p50_ms"`
	PublishP99Ms  float64 `json:"publish_p99_ms"`
	PublishMaxMs  float64 `json:"publish_max_ms"`
	EndToEndP50Ms float64 `json:"e2e_p50_ms,omitempty"`
	EndToEndP99Ms float64 `json:"e2e_p99_ms,omitempty"`
	Failed        int64   `json:"failed"`
}

func newBenchCmd(e *env) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure pipelined durable publish, and publish+consume",
		Long: `Publish --count messages of --size bytes with up to --inflight unanswered per
producer, and report messages/s, MB/s and publish-ack latency. With --consume,
one cluster group of --consumers consumers acks every message and the run
lasts until all were consumed; end-to-end latency is reported too.
--embedded runs a broker in this process on a temporary directory instead of
using --server.

The subcommands w1, w2, w3, w4 and all run the workloads of the peers'
harness (issue 9) under its names and parameters; delay measures delayed
messages.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.size < 8 || o.count < 1 || o.inflight < 1 || o.producers < 1 || o.consumers < 1 {
				return fmt.Errorf("--size must be at least 8 and --count, --inflight, --producers, --consumers at least 1")
			}
			addr := e.server
			if o.embedded {
				stop, a, err := startEmbedded(o.noSync)
				if err != nil {
					return err
				}
				defer stop()
				addr = a
			}
			r, err := runBench(cmd.Context(), e, addr, o)
			if err != nil {
				return err
			}
			if o.asJSON {
				return json.NewEncoder(e.stdout).Encode(r)
			}
			printBench(e, r)
			return nil
		},
	}
	cmd.AddCommand(newBenchDelayCmd(e))
	cmd.AddCommand(newBenchSuiteCmds(e)...)
	f := cmd.Flags()
	f.IntVar(&o.size, "size", 1024, "message body bytes")
	f.IntVar(&o.count, "count", 200_000, "messages to publish (in total)")
	f.IntVar(&o.inflight, "inflight", 1000, "unanswered messages per producer")
	f.IntVar(&o.producers, "producers", 1, "concurrent producers, each with its own stream")
	f.BoolVar(&o.consume, "consume", false, "also consume with one cluster group and ack every message")
	f.IntVar(&o.consumers, "consumers", 2, "consumers in the group (with --consume)")
	f.BoolVar(&o.embedded, "embedded", false, "run a broker in this process on a temporary directory")
	f.BoolVar(&o.noSync, "no-sync", false, "with --embedded: run the broker without fsync")
	f.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	f.StringVar(&o.topic, "topic", "", "publish to this existing topic and keep it (default: a temporary topic)")
	return cmd
}

// startEmbedded runs a broker (a one-voter cluster, as `dmq server`) on free loopback
// ports in a temporary directory.
func startEmbedded(noSync bool) (stop func(), addr string, err error) {
	dir, err := os.MkdirTemp("", "dmq-bench-")
	if err != nil {
		return nil, "", err
	}
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.HTTP, cfg.NoSync, cfg.Version = dir, "127.0.0.1:0", "127.0.0.1:0", noSync, Version
	cfg.ClusterListen = "127.0.0.1:0" // a one-voter cluster, as a plain dmq server, on a free port
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		os.RemoveAll(dir)
	}, s.GRPCAddr(), nil
}

func runBench(ctx context.Context, e *env, addr string, o benchOptions) (BenchResult, error) {
	c, err := e.dialAddr(addr)
	if err != nil {
		return BenchResult{}, err
	}
	defer c.Close()
	info, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{})
	if err != nil {
		return BenchResult{}, fmt.Errorf("reach broker at %s: %w", addr, err)
	}
	topic := o.topic
	if topic == "" {
		topic = fmt.Sprintf("test.bench.run-%d", time.Now().UnixNano())
		if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, Purpose: "dmq bench"}); err != nil {
			return BenchResult{}, err
		}
		defer c.DeleteTopic(context.Background(), topic)
	}
	r := BenchResult{Workload: "publish", Fsync: info.Fsync, Messages: o.count, Size: o.size, Producers: o.producers}

	var consumed atomic.Int64
	allConsumed := make(chan struct{})
	var e2eMu sync.Mutex
	var e2e []time.Duration
	if o.consume {
		r.Workload, r.Consumers = "publish+consume", o.consumers
		group := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group}); err != nil {
			return r, err
		}
		e2e = make([]time.Duration, 0, o.count)
		var once sync.Once
		for i := 0; i < o.consumers; i++ {
			k, err := c.Subscribe(ctx, topic, group, func(_ context.Context, m *client.Message) error {
				sent := int64(binary.LittleEndian.Uint64(m.Body))
				d := time.Duration(time.Now().UnixNano() - sent)
				e2eMu.Lock()
				e2e = append(e2e, d)
				e2eMu.Unlock()
				if consumed.Add(1) == int64(o.count) {
					once.Do(func() { close(allConsumed) })
				}
				return nil
			}, client.Prefetch(1000), client.ConsumerClientID(fmt.Sprintf("bench-%d", i)))
			if err != nil {
				return r, err
			}
			defer k.Close()
		}
	}

	body := make([]byte, o.size)
	for i := range body {
		body[i] = byte(rand.IntN(256))
	}
	lat := make([]time.Duration, o.count)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	per := o.count / o.producers
	for p := 0; p < o.producers; p++ {
		n := per
		if p == o.producers-1 {
			n = o.count - per*(o.producers-1)
		}
		base := p * per
		wg.Add(1)
		go func() {
			defer wg.Done()
			prod := c.NewProducer(topic, client.MaxInFlight(o.inflight))
			defer prod.Close()
			for i := 0; i < n; i++ {
				b := slices.Clone(body)
				t0 := time.Now()
				binary.LittleEndian.PutUint64(b, uint64(t0.UnixNano()))
				idx := base + i
				err := prod.PublishAsync(ctx, &client.Message{Body: b}, func(_ client.PublishResult, err error) {
					lat[idx] = time.Since(t0)
					if err != nil {
						failed.Add(1)
					}
				})
				if err != nil {
					failed.Add(int64(n - i))
					return
				}
			}
		}()
	}
	wg.Wait()
	if o.consume {
		select {
		case <-allConsumed:
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	r.Failed = failed.Load()
	r.Seconds = elapsed.Seconds()
	r.MsgsPerSec = float64(o.count-int(r.Failed)) / r.Seconds
	r.MBPerSec = r.MsgsPerSec * float64(o.size) / 1e6
	r.PublishP50Ms, r.PublishP99Ms, r.PublishMaxMs = percentiles(lat)
	if o.consume {
		e2eMu.Lock()
		r.EndToEndP50Ms, r.EndToEndP99Ms, _ = percentiles(e2e)
		e2eMu.Unlock()
	}
	return r, nil
}

// percentiles returns p50, p99 and max in milliseconds.
func percentiles(ds []time.Duration) (p50, p99, maxMs float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return ms(s[len(s)*50/100]), ms(s[min(len(s)*99/100, len(s)-1)]), ms(s[len(s)-1])
}

func printBench(e *env, r BenchResult) {
	durability := "fsync before ack"
	if !r.Fsync {
		durability = "NO fsync (broker runs --no-sync)"
	}
	fmt.Fprintf(e.stdout, "workload %s: %d × %d B, %d producer(s)", r.Workload, r.Messages, r.Size, r.Producers)
	if r.Consumers > 0 {
		fmt.Fprintf(e.stdout, ", %d consumer(s)", r.Consumers)
	}
	fmt.Fprintf(e.stdout, " — broker durability: %s\n", durability)
	fmt.Fprintf(e.stdout, "  %.0f msgs/s, %.1f MB/s, %.2f s, %d failed\n", r.MsgsPerSec, r.MBPerSec, r.Seconds, r.Failed)
	fmt.Fprintf(e.stdout, "  publish ack latency p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", r.PublishP50Ms, r.PublishP99Ms, r.PublishMaxMs)
	if r.Consumers > 0 {
		fmt.Fprintf(e.stdout, "  end-to-end latency p50 %.3f ms, p99 %.3f ms\n", r.EndToEndP50Ms, r.EndToEndP99Ms)
	}
}
