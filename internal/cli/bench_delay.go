package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

// DelayBenchResult is one run of `dmq bench delay`.
type DelayBenchResult struct {
	Workload       string  `json:"workload"`
	Fsync          bool    `json:"fsync"`
	Messages       int     `json:"messages"`
	Size           int     `json:"size"`
	SpanSeconds    float64 `json:"span_seconds"`
	ScheduleSecs   float64 `json:"schedule_seconds"`
	SchedulePerSec float64 `json:"schedule_msgs_per_sec"`
	Delivered      int64   `json:"delivered"`
	Early          int64   `json:"early"`
	LateP50Ms      float64 `json:"lateness_p50_ms"`
	LateP99Ms      float64 `json:"lateness_p99_ms"`
	LateMaxMs      float64 `json:"lateness_max_ms"`
	PeakRSSMB      float64 `json:"broker_peak_rss_mb"`
}

func newBenchDelayCmd(e *env) *cobra.Command {
	var count, size, inflight int
	var span time.Duration
	var wait, asJSON bool
	var topic string
	cmd := &cobra.Command{
		Use:   "delay",
		Short: "Measure delayed messages: scheduling rate, delivery lateness, broker memory",
		Long: `Publish --count delayed messages of --size bytes due uniformly over the next
--span, then (with --wait) consume them with one group and report how late
they arrived (none may be early). Prints the broker's peak RSS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size < 8 || count < 1 || span <= 0 {
				return fmt.Errorf("--size must be at least 8, --count at least 1, --span positive")
			}
			r, err := runDelayBench(cmd.Context(), e, e.server, topic, count, size, inflight, span, wait)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(r)
			}
			fmt.Fprintf(e.stdout, "workload delay: %d × %d B due over %s — broker durability: fsync %v\n", r.Messages, r.Size, span, r.Fsync)
			fmt.Fprintf(e.stdout, "  scheduled in %.2f s: %.0f msgs/s\n", r.ScheduleSecs, r.SchedulePerSec)
			if wait {
				fmt.Fprintf(e.stdout, "  delivered %d, early %d, lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", r.Delivered, r.Early, r.LateP50Ms, r.LateP99Ms, r.LateMaxMs)
			}
			fmt.Fprintf(e.stdout, "  broker peak RSS %.0f MB\n", r.PeakRSSMB)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 1_000_000, "delayed messages to publish")
	f.IntVar(&size, "size", 128, "message body bytes")
	f.IntVar(&inflight, "inflight", 1000, "unanswered publishes")
	f.DurationVar(&span, "span", 10*time.Minute, "due times are spread uniformly over this span from now")
	f.BoolVar(&wait, "wait", true, "consume and measure lateness until all were delivered")
	f.StringVar(&topic, "topic", "", "use this existing topic and keep it (default: a temporary topic)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func runDelayBench(ctx context.Context, e *env, addr, topic string, count, size, inflight int, span time.Duration, wait bool) (DelayBenchResult, error) {
	c, err := e.dialAddr(addr)
	if err != nil {
		return DelayBenchResult{}, err
	}
	defer c.Close()
	info, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{})
	if err != nil {
		return DelayBenchResult{}, fmt.Errorf("reach broker at %s: %w", addr, err)
	}
	if topic == "" {
		topic = fmt.Sprintf("test.bench.delay-%d", time.Now().UnixNano())
		if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, Purpose: "dmq bench delay"}); err != nil {
			return DelayBenchResult{}, err
		}
		defer c.DeleteTopic(context.Background(), topic)
	}
	r := DelayBenchResult{Workload: "delay", Fsync: info.Fsync, Messages: count, Size: size, SpanSeconds: span.Seconds()}
	var (
		mu        sync.Mutex
		lateness  = make([]time.Duration, 0, count)
		delivered atomic.Int64
		early     atomic.Int64
		all       = make(chan struct{})
		once      sync.Once
	)
	if wait {
		group := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topic, Name: group}); err != nil {
			return r, err
		}
		k, err := c.Subscribe(ctx, topic, group, func(_ context.Context, m *client.Message) error {
			late := time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(m.Body)))
			if late < 0 {
				early.Add(1)
			}
			mu.Lock()
			lateness = append(lateness, late)
			mu.Unlock()
			if delivered.Add(1) == int64(count) {
				once.Do(func() { close(all) })
			}
			return nil
		}, client.Prefetch(2000), client.Concurrency(4))
		if err != nil {
			return r, err
		}
		defer k.Close()
	}
	prod := c.NewProducer(topic, client.MaxInFlight(inflight))
	start := time.Now()
	var failed atomic.Int64
	for i := 0; i < count; i++ {
		due := start.Add(time.Duration(float64(span) * float64(i) / float64(count)))
		body := make([]byte, size)
		binary.LittleEndian.PutUint64(body, uint64(due.UnixNano()))
		if err := prod.PublishAsync(ctx, (&client.Message{Body: body}).WithDeliverAt(due), func(_ client.PublishResult, err error) {
			if err != nil {
				failed.Add(1)
			}
		}); err != nil {
			return r, err
		}
	}
	if err := prod.Close(); err != nil {
		return r, err
	}
	if n := failed.Load(); n > 0 {
		return r, fmt.Errorf("%d delayed publishes failed", n)
	}
	r.ScheduleSecs = time.Since(start).Seconds()
	r.SchedulePerSec = float64(count) / r.ScheduleSecs
	if wait {
		select {
		case <-all:
		case <-ctx.Done():
			return r, ctx.Err()
		}
		r.Delivered, r.Early = delivered.Load(), early.Load()
		mu.Lock()
		slices.Sort(lateness)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		r.LateP50Ms, r.LateP99Ms, r.LateMaxMs = ms(lateness[len(lateness)/2]), ms(lateness[len(lateness)*99/100]), ms(lateness[len(lateness)-1])
		mu.Unlock()
	}
	if info, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{}); err == nil {
		r.PeakRSSMB = float64(info.PeakRssBytes) / (1 << 20)
	}
	return r, nil
}
