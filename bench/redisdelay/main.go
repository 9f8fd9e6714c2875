// Command redisdelay is the hand-written Redis delay queue that teams build, measured the way
// `dmq bench delay` measures DMQ's delayed messages, so the two can be compared on one machine.
//
// A producer ZADDs --count members to one sorted set, pipelined in batches of --batch. Each
// member is a body of --size bytes whose first 8 bytes are its due time in Unix nanoseconds
// (little endian, as in `dmq bench delay`) followed by its index, so members are distinct; its
// score is the due time in milliseconds, rounded up. Due times are spread uniformly over --span
// from the start. --pollers pollers each loop: run a Lua script that atomically takes up to
// --limit due members (ZRANGEBYSCORE key -inf now LIMIT 0 limit, then ZREM them, so two pollers
// never take the same member), record lateness = now − due for each, and sleep --poll unless the
// batch was full. The result has the JSON field names of `dmq bench delay --json` where they mean
// the same, plus Redis-specific ones.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// popDue atomically takes up to ARGV[2] members with score <= ARGV[1] from KEYS[1].
var popDue = redis.NewScript(`
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #items > 0 then
  redis.call('ZREM', KEYS[1], unpack(items))
end
return items
`)

// Result is one run. Fields shared with `dmq bench delay --json` keep its names.
type Result struct {
	Workload       string  `json:"workload"`
	System         string  `json:"system"`
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

	RedisVersion     string  `json:"redis_version"`
	AppendOnly       string  `json:"redis_appendonly"`
	AppendFsync      string  `json:"redis_appendfsync"`
	PollMs           float64 `json:"redis_poll_ms"`
	Pollers          int     `json:"redis_pollers"`
	PopLimit         int     `json:"redis_pop_limit"`
	Batch            int     `json:"redis_zadd_batch"`
	Polls            int64   `json:"redis_polls"`
	EmptyPolls       int64   `json:"redis_empty_polls"`
	UsedMemoryPeakMB float64 `json:"redis_used_memory_peak_mb"`
	VmHWMMB          float64 `json:"redis_vmhwm_mb"`
	AOFSizeMB        float64 `json:"redis_aof_size_mb"`
	RedisPID         int     `json:"redis_pid"`
	Error            string  `json:"error,omitempty"`
}

func main() {
	var (
		addr    = flag.String("addr", "127.0.0.1:6379", "Redis address")
		count   = flag.Int("count", 1_000_000, "delayed messages to schedule")
		size    = flag.Int("size", 128, "member (message body) bytes, at least 16")
		span    = flag.Duration("span", 10*time.Minute, "due times are spread uniformly over this span from now")
		poll    = flag.Duration("poll", 10*time.Millisecond, "poller sleep after a batch that was not full")
		pollers = flag.Int("pollers", 1, "concurrent pollers")
		limit   = flag.Int("limit", 1000, "members one poll takes at most")
		batch   = flag.Int("batch", 1000, "ZADDs per pipeline round trip")
		key     = flag.String("key", "", "sorted set key (default: a fresh bench:delay:<ns>, deleted afterwards)")
		timeout = flag.Duration("timeout", 0, "give up this long after the start (default: span + 5m)")
		asJSON  = flag.Bool("json", false, "print the result as JSON")
	)
	flag.Parse()
	if *size < 16 || *count < 1 || *span <= 0 || *poll < 0 || *pollers < 1 || *limit < 1 || *batch < 1 {
		fmt.Fprintln(os.Stderr, "redisdelay: --size must be at least 16, --count, --pollers, --limit, --batch at least 1, --span positive")
		os.Exit(2)
	}
	if *timeout == 0 {
		*timeout = *span + 5*time.Minute
	}
	if *key == "" {
		*key = fmt.Sprintf("bench:delay:%d", time.Now().UnixNano())
	}
	rdb := redis.NewClient(&redis.Options{Addr: *addr, DisableIdentity: true, PoolSize: *pollers + 4})
	defer rdb.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := run(ctx, rdb, *key, *count, *size, *batch, *pollers, *limit, *span, *poll)
	if err != nil {
		r.Error = err.Error()
	}
	rdb.Del(context.Background(), *key)
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
	} else {
		fmt.Printf("workload delay on Redis %s (appendonly %s, appendfsync %s): %d × %d B due over %s, poll %s × %d\n",
			r.RedisVersion, r.AppendOnly, r.AppendFsync, r.Messages, r.Size, *span, *poll, r.Pollers)
		fmt.Printf("  scheduled in %.2f s: %.0f msgs/s\n", r.ScheduleSecs, r.SchedulePerSec)
		fmt.Printf("  delivered %d, early %d, lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d polls, %d empty)\n",
			r.Delivered, r.Early, r.LateP50Ms, r.LateP99Ms, r.LateMaxMs, r.Polls, r.EmptyPolls)
		fmt.Printf("  redis used_memory_peak %.0f MB, process VmHWM %.0f MB, AOF %.0f MB\n", r.UsedMemoryPeakMB, r.VmHWMMB, r.AOFSizeMB)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "redisdelay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rdb *redis.Client, key string, count, size, batch, pollers, limit int, span, poll time.Duration) (Result, error) {
	r := Result{Workload: "delay", System: "redis-zset", Messages: count, Size: size, SpanSeconds: span.Seconds(),
		PollMs: float64(poll) / float64(time.Millisecond), Pollers: pollers, PopLimit: limit, Batch: batch}
	server, err := info(ctx, rdb, "server")
	if err != nil {
		return r, fmt.Errorf("reach redis: %w", err)
	}
	r.RedisVersion = server["redis_version"]
	r.RedisPID, _ = strconv.Atoi(server["process_id"])
	if cfg, err := rdb.ConfigGet(ctx, "append*").Result(); err == nil {
		r.AppendOnly, r.AppendFsync = cfg["appendonly"], cfg["appendfsync"]
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil {
		return r, err
	} else if n != 0 {
		return r, fmt.Errorf("key %s already exists", key)
	}

	var (
		mu         sync.Mutex
		lateness   = make([]time.Duration, 0, count)
		delivered  atomic.Int64
		early      atomic.Int64
		polls      atomic.Int64
		emptyPolls atomic.Int64
		pollErr    error
		errOnce    sync.Once
		wg         sync.WaitGroup
	)
	pctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	for range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			flush := func() {
				mu.Lock()
				lateness = append(lateness, local...)
				mu.Unlock()
				local = local[:0]
			}
			defer flush()
			for pctx.Err() == nil && delivered.Load() < int64(count) {
				// Take members due by the current whole millisecond: scores are due times
				// rounded up, so a member taken is never early.
				items, err := popDue.Run(pctx, rdb, []string{key}, time.Now().UnixMilli(), limit).StringSlice()
				if err != nil && !errors.Is(err, redis.Nil) {
					if pctx.Err() == nil {
						errOnce.Do(func() { pollErr = err; stopPolling() })
					}
					return
				}
				now := time.Now().UnixNano()
				polls.Add(1)
				if len(items) == 0 {
					emptyPolls.Add(1)
				}
				for _, m := range items {
					late := time.Duration(now - int64(binary.LittleEndian.Uint64([]byte(m[:8]))))
					if late < 0 {
						early.Add(1)
					}
					local = append(local, late)
				}
				if len(local) >= 4096 {
					flush()
				}
				if delivered.Add(int64(len(items))) >= int64(count) {
					break
				}
				if len(items) < limit && poll > 0 {
					select {
					case <-time.After(poll):
					case <-pctx.Done():
					}
				}
			}
		}()
	}

	start := time.Now()
	pipe := rdb.Pipeline()
	for i := range count {
		due := start.Add(time.Duration(float64(span) * float64(i) / float64(count)))
		ns := due.UnixNano()
		m := make([]byte, size)
		binary.LittleEndian.PutUint64(m, uint64(ns))
		binary.LittleEndian.PutUint64(m[8:], uint64(i))
		scoreMs := (ns + int64(time.Millisecond) - 1) / int64(time.Millisecond) // rounded up
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(scoreMs), Member: m})
		if pipe.Len() == batch || i == count-1 {
			cmds, err := pipe.Exec(ctx)
			if err != nil {
				stopPolling()
				wg.Wait()
				return r, fmt.Errorf("ZADD batch: %w", err)
			}
			for _, c := range cmds {
				if n, _ := c.(*redis.IntCmd).Result(); n != 1 {
					stopPolling()
					wg.Wait()
					return r, fmt.Errorf("ZADD added %d members, want 1", n)
				}
			}
		}
	}
	r.ScheduleSecs = time.Since(start).Seconds()
	r.SchedulePerSec = float64(count) / r.ScheduleSecs

	wg.Wait()
	r.Delivered, r.Early = delivered.Load(), early.Load()
	r.Polls, r.EmptyPolls = polls.Load(), emptyPolls.Load()
	if len(lateness) > 0 {
		slices.Sort(lateness)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		r.LateP50Ms, r.LateP99Ms, r.LateMaxMs = ms(lateness[len(lateness)/2]), ms(lateness[len(lateness)*99/100]), ms(lateness[len(lateness)-1])
	}

	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if mem, err := info(mctx, rdb, "memory"); err == nil {
		r.UsedMemoryPeakMB = mb(mem["used_memory_peak"])
	}
	if p, err := info(mctx, rdb, "persistence"); err == nil {
		r.AOFSizeMB = mb(p["aof_current_size"])
	}
	if r.RedisPID > 0 {
		r.VmHWMMB = vmHWM(r.RedisPID)
		r.PeakRSSMB = r.VmHWMMB
	}

	switch {
	case pollErr != nil:
		return r, fmt.Errorf("poll: %w", pollErr)
	case r.Delivered < int64(count):
		return r, fmt.Errorf("delivered %d of %d before the timeout: %w", r.Delivered, count, ctx.Err())
	case r.Delivered > int64(count):
		return r, fmt.Errorf("delivered %d, more than the %d scheduled", r.Delivered, count)
	}
	return r, nil
}

// info returns the fields of one INFO section.
func info(ctx context.Context, rdb *redis.Client, section string) (map[string]string, error) {
	s, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func mb(bytes string) float64 {
	n, err := strconv.ParseFloat(bytes, 64)
	if err != nil {
		return 0
	}
	return n / (1 << 20)
}

// vmHWM reads the peak resident set of a local process, in MB; 0 when it cannot be read
// (Redis on another machine or in another PID namespace).
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) >= 1 {
				if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}
