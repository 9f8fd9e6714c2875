// Command soak runs a mixed workload against a running dmq server for a
// given time and reports, minute by minute, what flowed and what the
// broker process uses: pipelined producers at a fixed rate (a share of
// them delayed by up to a minute), a cluster group whose consumers nack
// some messages and come and go, and a broadcast group of two members.
// At the end it drains and checks that the cluster group got every
// message at least once and each broadcast member every message.
//
//	go run ./bench/soak --server 127.0.0.1:7420 --http 127.0.0.1:7480 --pid PID --duration 30m
//
// bench/soak.sh starts a server and runs this against it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/client"
)

type options struct {
	server, http string
	pid          int
	duration     time.Duration
	rate         int // messages per second, over all producers
	producers    int
	size         int
	delayedPct   int
	nackPct      int
	churn        time.Duration
}

// seen is a bitmap of message offsets one consumer (or group) received.
type seen struct {
	mu   sync.Mutex
	bits []uint64
	n    int64 // distinct offsets
}

func (s *seen) add(off uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := int(off / 64)
	for len(s.bits) <= w {
		s.bits = append(s.bits, make([]uint64, max(len(s.bits), 1024))...)
	}
	if s.bits[w]&(1<<(off%64)) == 0 {
		s.bits[w] |= 1 << (off % 64)
		s.n++
	}
}

func (s *seen) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// counters are what flowed since the last report.
type counters struct {
	published, failed, delayed, consumed, nacked, broadcast atomic.Int64
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "127.0.0.1:7420", "broker gRPC address")
	flag.StringVar(&o.http, "http", "127.0.0.1:7480", "broker HTTP address (for goroutines)")
	flag.IntVar(&o.pid, "pid", 0, "broker process id (for RSS and open files; 0: not reported)")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to publish")
	flag.IntVar(&o.rate, "rate", 3000, "messages per second over all producers")
	flag.IntVar(&o.producers, "producers", 4, "pipelined producers")
	flag.IntVar(&o.size, "size", 512, "message body bytes")
	flag.IntVar(&o.delayedPct, "delayed-pct", 5, "percent of messages delayed by 1 to 60 s")
	flag.IntVar(&o.nackPct, "nack-pct", 1, "percent of first deliveries the cluster group nacks")
	flag.DurationVar(&o.churn, "churn", 30*time.Second, "how often a cluster consumer leaves and a new one joins")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	c, err := client.Dial(o.server, client.WithClientID("soak-admin"))
	if err != nil {
		return err
	}
	defer c.Close()
	topic := fmt.Sprintf("test.soak.t%d", time.Now().Unix())
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topic, Owner: "soak", Purpose: "soak test"}); err != nil {
		return err
	}
	for _, g := range []client.GroupSpec{
		{Topic: topic, Name: "workers", RetryBackoff: []time.Duration{time.Second}, MaxAttempts: 100},
		{Topic: topic, Name: "audit", Mode: client.Broadcast},
	} {
		if _, err := c.CreateGroup(ctx, g); err != nil {
			return err
		}
	}
	var cnt counters
	workers := &seen{}
	audit := []*seen{{}, {}}

	// Broadcast members, for the whole run.
	for i, s := range audit {
		ac, err := client.Dial(o.server, client.WithClientID(fmt.Sprint("soak-audit-", i)))
		if err != nil {
			return err
		}
		defer ac.Close()
		k, err := ac.Subscribe(ctx, topic, "audit", func(_ context.Context, m *client.Message) error {
			off, _ := strconv.ParseUint(m.ID, 10, 64)
			s.add(off)
			cnt.broadcast.Add(1)
			return nil
		}, client.Prefetch(1000))
		if err != nil {
			return err
		}
		defer k.Close()
	}

	// Cluster consumers that come and go.
	handler := func(_ context.Context, m *client.Message) error {
		off, _ := strconv.ParseUint(m.ID, 10, 64)
		if m.Attempt == 1 && int(off%100) < o.nackPct {
			cnt.nacked.Add(1)
			return errors.New("soak: nack on the first attempt")
		}
		workers.add(off)
		cnt.consumed.Add(1)
		return nil
	}
	wc, err := client.Dial(o.server, client.WithClientID("soak-workers"))
	if err != nil {
		return err
	}
	defer wc.Close()
	var kmu sync.Mutex
	var ks []*client.Consumer
	join := func() error {
		k, err := wc.Subscribe(ctx, topic, "workers", handler, client.Prefetch(500), client.Concurrency(4))
		if err != nil {
			return err
		}
		kmu.Lock()
		ks = append(ks, k)
		kmu.Unlock()
		return nil
	}
	for range 3 {
		if err := join(); err != nil {
			return err
		}
	}
	stopChurn := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		t := time.NewTicker(o.churn)
		defer t.Stop()
		for {
			select {
			case <-stopChurn:
				return
			case <-t.C:
			}
			kmu.Lock()
			old := ks[0]
			ks = ks[1:]
			kmu.Unlock()
			old.Close() // graceful: running handlers finish, the rest is redelivered
			if err := join(); err != nil {
				fmt.Fprintln(os.Stderr, "soak: rejoin:", err)
			}
		}
	}()

	// Producers at a fixed total rate.
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	var acked atomic.Int64
	for p := range o.producers {
		pr := c.NewProducer(topic)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			defer pr.Close()
			perTick := max(o.rate/o.producers/100, 1) // every 10 ms
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			body := make([]byte, o.size)
			for i := 0; ; {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for range perTick {
					i++
					m := &client.Message{Body: body, Key: fmt.Sprintf("p%d-%d", p, i)}
					if i%100 < o.delayedPct {
						m.Delay = time.Duration(1+i%60) * time.Second
						cnt.delayed.Add(1)
					}
					err := pr.PublishAsync(ctx, m, func(_ client.PublishResult, err error) {
						if err != nil {
							cnt.failed.Add(1)
							return
						}
						acked.Add(1)
						cnt.published.Add(1)
					})
					if err != nil {
						cnt.failed.Add(1)
					}
				}
			}
		}()
	}

	fmt.Printf("soak: topic %s, %d msg/s of %d B from %d producers, %d%% delayed, %d%% nacked, a consumer churns every %s, for %s\n",
		topic, o.rate, o.size, o.producers, o.delayedPct, o.nackPct, o.churn, o.duration)
	fmt.Println("| minute | published/s | consumed/s (workers) | broadcast/s (2 members) | nacks | delayed sent | failed | RSS MB | goroutines | open files |")
	fmt.Println("| ------ | ----------- | -------------------- | ----------------------- | ----- | ------------ | ------ | ------ | ---------- | ---------- |")
	report := func(label string, secs float64) {
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %d | %d | %d | %s | %s | %s |\n", label,
			float64(cnt.published.Swap(0))/secs, float64(cnt.consumed.Swap(0))/secs, float64(cnt.broadcast.Swap(0))/secs,
			cnt.nacked.Swap(0), cnt.delayed.Swap(0), cnt.failed.Swap(0), rssMB(o.pid), goroutines(o.http), openFiles(o.pid))
	}
	report("start", 1)
	start := time.Now()
	for minute := 1; time.Since(start) < o.duration; minute++ {
		time.Sleep(time.Until(start.Add(time.Duration(minute) * time.Minute)))
		report(strconv.Itoa(minute), 60)
	}
	close(stop)
	pwg.Wait()
	close(stopChurn)
	<-churned

	// Drain: every stored message once at least to the workers and to each
	// broadcast member (delayed ones come due within a minute).
	drainStart := time.Now()
	deadline := drainStart.Add(5 * time.Minute)
	for {
		tp, err := c.GetTopic(ctx, topic)
		if err != nil {
			return err
		}
		stored := int64(tp.Stats.NextOffset)
		done := tp.Stats.DelayedPending == 0 && workers.count() == stored && audit[0].count() == stored && audit[1].count() == stored
		if done {
			report("end", time.Since(drainStart).Seconds())
			fmt.Printf("\nsoak: %d messages acked to producers, %d stored; workers got all %d, each broadcast member all %d; drained in %s\n",
				acked.Load(), stored, workers.count(), audit[0].count(), time.Since(drainStart).Round(time.Second))
			if stored != acked.Load() {
				return fmt.Errorf("%d acked but %d stored (no producer retries in this run, so they must match)", acked.Load(), stored)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not drained after 5 minutes: stored %d, delayed pending %d, workers %d, audit %d/%d",
				stored, tp.Stats.DelayedPending, workers.count(), audit[0].count(), audit[1].count())
		}
		time.Sleep(time.Second)
	}
}

// rssMB reads VmRSS of the broker process.
func rssMB(pid int) string {
	if pid == 0 {
		return "-"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return strconv.Itoa(kb >> 10)
		}
	}
	return "?"
}

// openFiles counts the broker's file descriptors.
func openFiles(pid int) string {
	if pid == 0 {
		return "-"
	}
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return "?"
	}
	return strconv.Itoa(len(es))
}

// goroutines reads the total from the broker's goroutine profile.
func goroutines(httpAddr string) string {
	resp, err := http.Get("http://" + httpAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	line, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	// "goroutine profile: total N"
	if f := strings.Fields(strings.SplitN(string(line), "\n", 2)[0]); len(f) == 4 {
		return f[3]
	}
	return "?"
}
