package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/shard"
	"github.com/spf13/cobra"
)

// The workloads of `dmq bench w1|w2|w3|w4|all` are those of the peers'
// harness (../shared/bench-peers, see issue 9), with the same names,
// message counts, sizes and windows, and results in the same JSON fields,
// so that one script can put DMQ next to NATS, Redis and RabbitMQ.
var suiteWorkloads = []string{"w1_1k", "w1_128", "w2", "w3_tput", "w3_lat", "w4"}

// suiteOptions are the knobs shared by the workload commands. The names
// follow the peers' harness flags (-reps, -scale, -window, -maxdur, -hard,
// -label, -broker-pid).
type suiteOptions struct {
	reps, window, producers, topics, prefetch, brokerPID int
	// shards, when above 1, places topic i on shard i mod shards of a cluster.
	shards                             int
	scale                              float64
	maxDur, hard, settle               time.Duration
	embedded, noSync, asJSON, noWarmup bool
	label, cpuProfile, memProfile      string
}

// SuiteResult is one run of one workload: one JSON line. The fields up to
// Err carry the names and meaning of the peers' harness results; the rest
// are DMQ's.
type SuiteResult struct {
	When        string  `json:"when"`
	Label       string  `json:"label"`
	Workload    string  `json:"workload"`
	Rep         int     `json:"rep"`
	Size        int     `json:"size"`
	Target      int     `json:"target"`              // messages requested
	Msgs        int     `json:"msgs"`                // messages the broker acked
	Groups      int     `json:"groups,omitempty"`    // consumer groups (per topic)
	Delivered   int64   `json:"delivered,omitempty"` // unique deliveries, all groups
	Dups        int64   `json:"dups,omitempty"`      // redeliveries seen
	Secs        float64 `json:"secs"`                // measured interval
	PubSecs     float64 `json:"pub_secs,omitempty"`  // first publish to last broker ack
	MsgsPerSec  float64 `json:"msgs_per_s"`
	MBPerSec    float64 `json:"mb_per_s"` // payload bytes, 1 MB = 1e6 B
	P50         float64 `json:"p50_ms,omitempty"`
	P90         float64 `json:"p90_ms,omitempty"`
	P99         float64 `json:"p99_ms,omitempty"`
	Max         float64 `json:"max_ms,omitempty"`
	SchedP50    float64 `json:"sched_p50_ms,omitempty"` // paced runs: from the scheduled send time
	SchedP99    float64 `json:"sched_p99_ms,omitempty"`
	SchedMax    float64 `json:"sched_max_ms,omitempty"`
	Rate        float64 `json:"rate,omitempty"`         // target publish rate of paced runs
	PerConsumer []int64 `json:"per_consumer,omitempty"` // unique deliveries per consumer
	BrokerCPU   float64 `json:"broker_cpu_s,omitempty"` // with --broker-pid
	ClientCPU   float64 `json:"client_cpu_s,omitempty"` // this process (broker included with --embedded)
	Capped      bool    `json:"capped,omitempty"`
	Err         string  `json:"err,omitempty"`

	Fsync      bool   `json:"fsync"`      // the broker fsyncs before it acks a publish
	Durability string `json:"durability"` // the same, for a person
	Producers  int    `json:"producers"`
	Topics     int    `json:"topics"`
	Window     int    `json:"window"`
	Embedded   bool   `json:"embedded,omitempty"`
}

const suiteLong = `Runs the workloads of the peers' harness (../shared/bench-peers, issue 9)
with the same names and parameters, and prints one line per run (one JSON
object per line with --json, in the harness's result fields):

  w1_1k    pipelined durable publish, 1 KiB × 200,000, up to --window unanswered
  w1_128   the same with 128 B × 500,000
  w2       synchronous publish latency, 1 KiB × 5,000, one in flight (p50/p99/max)
  w3_tput  1 pipelined producer + one cluster group of 2 consumers acking every
           message, 1 KiB × 200,000: msgs/s until all were consumed
  w3_lat   the same topology paced at 5,000 msg/s for 10 s: end-to-end latency
           (publish call to handler) p50/p99/max
  w4       fan-out, 1 KiB × 100,000 to 4 groups of one consumer each: time
           until all four got all

Every run uses fresh temporary topics (deleted afterwards) and one untimed
5,000-message warm-up precedes the first. Every figure is printed with the
broker's durability mode as the broker reports it (fsync before ack, or not).

DMQ has no partitions: a topic is one log. --topics N spreads a workload over
N topics used as shards (each with the workload's groups and consumers);
on a cluster of several shards, --shards N names topic i so that shard i mod N
holds it (otherwise the names' hashes place them);
--producers N publishes from N producers, each with its own connection, each
with up to --window unanswered, taking turns over the message numbers (and
over the topics). w2 always uses one producer and one topic.

Against a running broker (--server) or one started in this process on a
temporary directory (--embedded). --broker-pid records the broker process's
CPU time per run, like the harness; --cpuprofile and --memprofile profile
this process (broker included with --embedded).`

func newBenchSuiteCmds(e *env) []*cobra.Command {
	mk := func(use, short string, workloads []string, withList bool) *cobra.Command {
		var o suiteOptions
		var list string
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Long:  suiteLong,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ws := workloads
				if withList {
					ws = strings.Split(list, ",")
				}
				return runSuite(cmd.Context(), e, o, ws)
			},
		}
		f := cmd.Flags()
		if withList {
			f.StringVar(&list, "workloads", strings.Join(suiteWorkloads, ","), "comma-separated workloads: "+strings.Join(suiteWorkloads, ","))
		}
		f.IntVar(&o.reps, "reps", 1, "repetitions of every workload")
		f.Float64Var(&o.scale, "scale", 1, "multiply message counts and the w3_lat duration (for quick runs)")
		f.IntVar(&o.window, "window", 1000, "unanswered publishes per producer")
		f.IntVar(&o.producers, "producers", 1, "producers, each with its own connection")
		f.IntVar(&o.topics, "topics", 1, "topics the load is spread over (DMQ has no partitions; topics act as shards)")
		f.IntVar(&o.shards, "shards", 0, "a cluster's shard count: name topic i so that shard i mod N holds it (spreads --topics evenly)")
		f.IntVar(&o.prefetch, "prefetch", 1000, "messages the broker may send ahead to each consumer")
		f.DurationVar(&o.maxDur, "maxdur", 90*time.Second, "cap on the publishing phase of one run")
		f.DurationVar(&o.hard, "hard", 60*time.Second, "cap on waiting for consumers after publishing")
		f.BoolVar(&o.noWarmup, "no-warmup", false, "skip the untimed warm-up run")
		f.DurationVar(&o.settle, "settle", time.Second, "pause between runs, after a garbage collection (as the harness does)")
		f.StringVar(&o.label, "label", "", "configuration name in the results (default dmq-fsync or dmq-nosync)")
		f.IntVar(&o.brokerPID, "broker-pid", 0, "PID of the broker process, to record its CPU time per run")
		f.BoolVar(&o.embedded, "embedded", false, "run a broker in this process on a temporary directory")
		f.BoolVar(&o.noSync, "no-sync", false, "with --embedded: run the broker without fsync")
		f.BoolVar(&o.asJSON, "json", false, "print one JSON object per run")
		f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the runs to this file")
		f.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of this process after the runs to this file")
		return cmd
	}
	return []*cobra.Command{
		mk("w1", "W1: pipelined durable publish throughput (w1_1k and w1_128)", []string{"w1_1k", "w1_128"}, false),
		mk("w2", "W2: synchronous publish latency (one in flight)", []string{"w2"}, false),
		mk("w3", "W3: publish + one group of 2 consumers: throughput (w3_tput) and latency at 5,000 msg/s (w3_lat)", []string{"w3_tput", "w3_lat"}, false),
		mk("w4", "W4: fan-out to 4 groups", []string{"w4"}, false),
		mk("all", "Every workload of the peers' harness, or those named by --workloads", nil, true),
	}
}

// suite runs workloads against one broker.
type suite struct {
	o     suiteOptions
	e     *env // credentials for every connection
	addr  string
	c     *client.Client // topics, groups and W2's publishes
	label string
	fsync bool
	seq   int // numbers the topics of this process
}

func runSuite(ctx context.Context, e *env, o suiteOptions, workloads []string) error {
	for _, w := range workloads {
		if !slices.Contains(suiteWorkloads, w) {
			return fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(suiteWorkloads, ", "))
		}
	}
	if o.shards < 0 || o.shards > shard.Max {
		return fmt.Errorf("--shards must be between 0 and %d", shard.Max)
	}
	if o.reps < 1 || o.window < 1 || o.producers < 1 || o.topics < 1 || o.prefetch < 1 || o.scale <= 0 {
		return fmt.Errorf("--reps, --window, --producers, --topics and --prefetch must be at least 1, --scale positive")
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
	c, err := e.dialAddr(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.API().ServerInfo(ctx, &dmqv1.ServerInfoRequest{})
	if err != nil {
		return fmt.Errorf("reach broker at %s: %w", addr, err)
	}
	s := &suite{o: o, e: e, addr: addr, c: c, fsync: info.Fsync, label: o.label}
	if s.label == "" {
		s.label = "dmq-fsync"
		if !s.fsync {
			s.label = "dmq-nosync"
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if !o.asJSON {
		fmt.Fprintf(e.stdout, "broker %s: durability %s; %d producer(s), %d topic(s), window %d per producer\n",
			addr, durability(s.fsync), o.producers, o.topics, o.window)
	}
	if !o.noWarmup {
		w := s.w1(ctx, "warmup", 0, s.n(5000), 1024)
		if !o.asJSON {
			fmt.Fprintf(e.stdout, "%-12s warmup: %.0f msg/s err=%q\n", s.label, w.MsgsPerSec, w.Err)
		}
	}
	var all []SuiteResult
	for _, w := range workloads {
		for rep := 1; rep <= o.reps; rep++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			b0, c0 := procCPU(o.brokerPID), selfCPU()
			var r SuiteResult
			switch w {
			case "w1_1k":
				r = s.w1(ctx, w, rep, s.n(200_000), 1024)
			case "w1_128":
				r = s.w1(ctx, w, rep, s.n(500_000), 128)
			case "w2":
				r = s.w2(ctx, w, rep, s.n(5000), 1024)
			case "w3_tput":
				r = s.e2e(ctx, e2eSpec{name: w, rep: rep, n: s.n(200_000), size: 1024, groups: 1, perGroup: 2})
			case "w3_lat":
				const rate = 5000
				dur := time.Duration(float64(10*time.Second) * o.scale)
				r = s.e2e(ctx, e2eSpec{name: w, rep: rep, n: max(1, int(rate*dur.Seconds())), size: 1024, groups: 1, perGroup: 2, rate: rate, recordLat: true})
			case "w4":
				r = s.e2e(ctx, e2eSpec{name: w, rep: rep, n: s.n(100_000), size: 1024, groups: 4, perGroup: 1})
			}
			if b1 := procCPU(o.brokerPID); b0 >= 0 && b1 >= 0 {
				r.BrokerCPU = b1 - b0
			}
			r.ClientCPU = selfCPU() - c0
			all = append(all, r)
			if o.asJSON {
				if err := json.NewEncoder(e.stdout).Encode(r); err != nil {
					return err
				}
			} else {
				printSuiteRun(e.stdout, r)
			}
			runtime.GC()
			select {
			case <-time.After(o.settle):
			case <-ctx.Done():
			}
		}
	}
	if !o.asJSON && o.reps > 1 {
		printSuiteSummary(e.stdout, all)
	}
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	return nil
}

// n scales a message count (at least 1), like the harness's -scale.
func (s *suite) n(x int) int { return max(1, int(float64(x)*s.o.scale)) }

// base fills the fields every result of workload w has.
func (s *suite) base(w string, rep, size, n int) SuiteResult {
	return SuiteResult{
		When: time.Now().UTC().Format(time.RFC3339), Label: s.label, Workload: w, Rep: rep, Size: size, Target: n,
		Fsync: s.fsync, Durability: durability(s.fsync), Producers: s.o.producers, Topics: s.o.topics,
		Window: s.o.window, Embedded: s.o.embedded,
	}
}

// prepare creates the topics of one run, each with the given groups, and
// returns them with a function that deletes them again.
func (s *suite) prepare(ctx context.Context, w string, ntopics int, groups []string) ([]string, func(), error) {
	var topics []string
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, t := range topics {
			s.c.DeleteTopic(ctx, t)
		}
	}
	stamp := time.Now().UnixNano() % 1_000_000_000
	for i := range ntopics {
		s.seq++
		name := fmt.Sprintf("test.bench.%s-%d-%d-%d", strings.ReplaceAll(w, "_", "-"), stamp, s.seq, i)
		for k := 0; s.o.shards > 1 && shard.Of(name, s.o.shards) != i%s.o.shards; k++ {
			name = fmt.Sprintf("test.bench.%s-%d-%d-%d-%d", strings.ReplaceAll(w, "_", "-"), stamp, s.seq, i, k)
		}
		if _, err := s.c.CreateTopic(ctx, client.TopicSpec{Name: name, Purpose: "dmq bench " + w}); err != nil {
			cleanup()
			return nil, nil, err
		}
		topics = append(topics, name)
		for _, g := range groups {
			if _, err := s.c.CreateGroup(ctx, client.GroupSpec{Topic: name, Name: g}); err != nil {
				cleanup()
				return nil, nil, err
			}
		}
	}
	return topics, cleanup, nil
}

func durability(fsync bool) string {
	if fsync {
		return "fsync before ack"
	}
	return "NO fsync (broker runs --no-sync)"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return describe(err)
}

func printSuiteRun(w io.Writer, r SuiteResult) {
	fmt.Fprintf(w, "%-12s %-8s rep %d: msgs=%d/%d secs=%.2f %.0f msg/s %.1f MB/s", r.Label, r.Workload, r.Rep, r.Msgs, r.Target, r.Secs, r.MsgsPerSec, r.MBPerSec)
	if r.P50 > 0 || r.Max > 0 {
		fmt.Fprintf(w, " p50=%.3f p99=%.3f max=%.2f ms", r.P50, r.P99, r.Max)
	}
	if r.Groups > 0 {
		fmt.Fprintf(w, " deliv=%d %v dups=%d", r.Delivered, r.PerConsumer, r.Dups)
	}
	if r.BrokerCPU > 0 {
		fmt.Fprintf(w, " cpu broker=%.2fs", r.BrokerCPU)
	}
	fmt.Fprintf(w, " client=%.2fs [%s]", r.ClientCPU, r.Durability)
	if r.Capped {
		fmt.Fprint(w, " CAPPED")
	}
	if r.Err != "" {
		fmt.Fprintf(w, " err=%q", r.Err)
	}
	fmt.Fprintln(w)
}

// printSuiteSummary prints, per workload, the median and range over the
// repetitions of its main figure.
func printSuiteSummary(w io.Writer, all []SuiteResult) {
	fmt.Fprintln(w, "median [min–max]:")
	var order []string
	by := map[string][]SuiteResult{}
	for _, r := range all {
		if _, ok := by[r.Workload]; !ok {
			order = append(order, r.Workload)
		}
		by[r.Workload] = append(by[r.Workload], r)
	}
	for _, wl := range order {
		rs := by[wl]
		stat := func(f func(SuiteResult) float64, format string) string {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			m, lo, hi := medianRange(v)
			return fmt.Sprintf(format+" ["+format+"–"+format+"]", m, lo, hi)
		}
		line := stat(func(r SuiteResult) float64 { return r.MsgsPerSec }, "%.0f") + " msg/s"
		if rs[0].P50 > 0 || rs[0].Max > 0 {
			line += ", p50 " + stat(func(r SuiteResult) float64 { return r.P50 }, "%.3f") +
				" ms, p99 " + stat(func(r SuiteResult) float64 { return r.P99 }, "%.3f") + " ms"
		}
		if wl == "w4" {
			line += ", " + stat(func(r SuiteResult) float64 { return r.Secs }, "%.2f") + " s"
		}
		fmt.Fprintf(w, "  %-8s %s [%s]\n", wl, line, rs[0].Durability)
	}
}

// medianRange returns the median (the mean of the middle two for an even
// count), minimum and maximum of v.
func medianRange(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

// procCPU returns the user+system CPU seconds process pid used so far (from
// /proc/<pid>/stat), or -1 when unknown.
func procCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // after ")": state ppid ... utime(index 11) stime(12)
		return -1
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// selfCPU returns the user+system CPU seconds this process used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
