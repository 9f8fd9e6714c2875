package cli

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/client"
)

// benchPool is random bytes that message bodies are cut from, so bodies do
// not compress and differ from each other (the harness does the same).
var benchPool = sync.OnceValue(func() []byte {
	b := make([]byte, 4<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
})

// benchBody returns a new body of size (at least 24) bytes whose first 24
// bytes carry the scheduled send time (Unix ns), the message number and the
// actual send time, in the layout of the peers' harness.
func benchBody(seq, size int, sched time.Time) []byte {
	pool := benchPool()
	b := make([]byte, size)
	off := (seq * 7919) % (len(pool) - size)
	copy(b, pool[off:off+size])
	binary.LittleEndian.PutUint64(b[0:], uint64(sched.UnixNano()))
	binary.LittleEndian.PutUint64(b[8:], uint64(seq))
	binary.LittleEndian.PutUint64(b[16:], uint64(time.Now().UnixNano()))
	return b
}

// decodeBenchBody is the inverse of benchBody; seq is -1 for a foreign body.
func decodeBenchBody(b []byte) (sched int64, seq int, sent int64) {
	if len(b) < 24 {
		return 0, -1, 0
	}
	return int64(binary.LittleEndian.Uint64(b[0:])), int(binary.LittleEndian.Uint64(b[8:])), int64(binary.LittleEndian.Uint64(b[16:]))
}

// pubStats is the outcome of a publishing phase.
type pubStats struct {
	acked   int
	firstE  error
	start   time.Time
	lastAck time.Time
	capped  bool
}

// pipelined publishes messages 0..n-1 from s.o.producers producers, each
// with its own connection and at most s.o.window unanswered (the SDK's
// MaxInFlight blocks beyond that). Producer p sends the messages p, p+P,
// p+2P... to topics[p % len(topics)]. due (optional) paces the sends:
// message i goes out at due(i) and carries it as its scheduled time.
func (s *suite) pipelined(ctx context.Context, topics []string, n, size int, due func(int) time.Time) pubStats {
	var (
		acked   atomic.Int64
		lastAck atomic.Int64
		capped  atomic.Bool
		mu      sync.Mutex
		firstE  error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstE == nil {
			firstE = err
		}
		mu.Unlock()
	}
	np := s.o.producers
	clients := make([]*client.Client, np)
	for p := range np {
		c, err := s.e.dialAddr(s.addr)
		if err != nil {
			for _, c := range clients[:p] {
				c.Close()
			}
			return pubStats{firstE: err, start: time.Now()}
		}
		clients[p] = c
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	st := pubStats{start: time.Now()}
	for p := range np {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prod := clients[p].NewProducer(topics[p%len(topics)], client.MaxInFlight(s.o.window))
			defer prod.Close() // waits for every answer
			for i := p; i < n; i += np {
				ts := time.Now()
				if due != nil {
					ts = due(i)
					if d := time.Until(ts); d > 0 {
						time.Sleep(d)
					}
				}
				if time.Since(st.start) > s.o.maxDur {
					capped.Store(true)
					return
				}
				err := prod.PublishAsync(ctx, &client.Message{Body: benchBody(i, size, ts)}, func(_ client.PublishResult, err error) {
					if err != nil {
						fail(err)
						return
					}
					acked.Add(1)
					lastAck.Store(time.Now().UnixNano())
				})
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st.acked, st.firstE, st.capped = int(acked.Load()), firstE, capped.Load()
	st.lastAck = time.Unix(0, lastAck.Load())
	if st.acked == 0 {
		st.lastAck = st.start
	}
	return st
}

// w1: pipelined durable publish throughput. One group exists on each
// topic, with no consumer attached, as in the harness.
func (s *suite) w1(ctx context.Context, name string, rep, n, size int) SuiteResult {
	r := s.base(name, rep, size, n)
	topics, cleanup, err := s.prepare(ctx, "w1", s.o.topics, []string{"g0"})
	if err != nil {
		r.Err = errString(err)
		return r
	}
	defer cleanup()
	st := s.pipelined(ctx, topics, n, size, nil)
	r.Msgs, r.Capped, r.Err = st.acked, st.capped, errString(st.firstE)
	r.Secs = st.lastAck.Sub(st.start).Seconds()
	r.PubSecs = r.Secs
	if r.Secs > 0 {
		r.MsgsPerSec = float64(st.acked) / r.Secs
		r.MBPerSec = r.MsgsPerSec * float64(size) / 1e6
	}
	return r
}

// w2: synchronous publish latency, one message in flight, with the SDK's
// synchronous Client.Publish (one unary call per message).
func (s *suite) w2(ctx context.Context, name string, rep, n, size int) SuiteResult {
	r := s.base(name, rep, size, n)
	r.Producers, r.Topics = 1, 1
	topics, cleanup, err := s.prepare(ctx, "w2", 1, []string{"g0"})
	if err != nil {
		r.Err = errString(err)
		return r
	}
	defer cleanup()
	lat := make([]float64, 0, n)
	start := time.Now()
	for i := range n {
		if time.Since(start) > s.o.maxDur {
			r.Capped = true
			break
		}
		t0 := time.Now()
		if _, err := s.c.Publish(ctx, topics[0], &client.Message{Body: benchBody(i, size, t0)}); err != nil {
			r.Err = errString(err)
			break
		}
		lat = append(lat, msSince(t0))
	}
	r.Secs = time.Since(start).Seconds()
	r.Msgs = len(lat)
	r.PubSecs = r.Secs
	r.MsgsPerSec = float64(len(lat)) / r.Secs
	r.MBPerSec = r.MsgsPerSec * float64(size) / 1e6
	r.P50, r.P90, r.P99, r.Max = latencies(lat)
	if r.Msgs == 0 && r.Err == "" {
		r.Err = "no message published"
	}
	return r
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Nanoseconds()) / 1e6 }

// latencies sorts lat (ms) and returns its nearest-rank p50, p90, p99 and
// maximum, computed as the peers' harness does.
func latencies(lat []float64) (p50, p90, p99, maxMs float64) {
	if len(lat) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(lat)
	return nearestRank(lat, .50), nearestRank(lat, .90), nearestRank(lat, .99), lat[len(lat)-1]
}

func nearestRank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
