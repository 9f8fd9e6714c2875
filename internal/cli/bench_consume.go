package cli

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmqio/dmq/client"
)

// e2eSpec describes a workload with consumers: w3_tput, w3_lat and w4.
type e2eSpec struct {
	name      string
	rep       int
	n, size   int
	groups    int     // cluster groups per topic
	perGroup  int     // consumers per group and topic
	rate      float64 // messages/s; 0 publishes as fast as the window allows
	recordLat bool
}

// tracker counts unique deliveries per group (a message number belongs to
// one topic, so group i of every topic shares bitmap i) and records
// end-to-end latencies.
type tracker struct {
	n        int
	seen     [][]atomic.Uint32
	uniq     atomic.Int64
	dups     atomic.Int64
	expected atomic.Int64
	doneAt   atomic.Int64
	done     chan struct{}
	once     sync.Once
	recLat   bool
	mu       sync.Mutex
	lat      []float64 // receipt - actual send, ms
	latSched []float64 // receipt - scheduled send, ms
}

func newTracker(n, groups int, recLat bool) *tracker {
	t := &tracker{n: n, done: make(chan struct{}), recLat: recLat, seen: make([][]atomic.Uint32, groups)}
	for i := range t.seen {
		t.seen[i] = make([]atomic.Uint32, n)
	}
	if recLat {
		t.lat, t.latSched = make([]float64, 0, n), make([]float64, 0, n)
	}
	return t
}

func (t *tracker) finish() {
	t.once.Do(func() { t.doneAt.Store(time.Now().UnixNano()); close(t.done) })
}

// handler counts the deliveries of group g into count and acks each
// message by returning nil.
func (t *tracker) handler(g int, count *atomic.Int64) client.Handler {
	return func(_ context.Context, m *client.Message) error {
		now := time.Now().UnixNano()
		sched, seq, sent := decodeBenchBody(m.Body)
		if seq < 0 || seq >= t.n {
			return nil
		}
		if t.seen[g][seq].Swap(1) != 0 {
			t.dups.Add(1)
			return nil
		}
		if t.recLat {
			t.mu.Lock()
			t.lat = append(t.lat, float64(now-sent)/1e6)
			t.latSched = append(t.latSched, float64(now-sched)/1e6)
			t.mu.Unlock()
		}
		count.Add(1)
		if u, e := t.uniq.Add(1), t.expected.Load(); e > 0 && u >= e {
			t.finish()
		}
		return nil
	}
}

// e2e publishes while consumers of every group receive and ack, and
// measures from the first publish until every group got every message the
// broker acked. Each consumer has its own connection, as separate
// processes would, and handles one message at a time.
func (s *suite) e2e(ctx context.Context, sp e2eSpec) SuiteResult {
	r := s.base(sp.name, sp.rep, sp.size, sp.n)
	r.Groups, r.Rate = sp.groups, sp.rate
	var groups []string
	for g := range sp.groups {
		groups = append(groups, fmt.Sprintf("g%d", g))
	}
	topics, cleanup, err := s.prepare(ctx, sp.name, s.o.topics, groups)
	if err != nil {
		r.Err = errString(err)
		return r
	}
	defer cleanup()
	tr := newTracker(sp.n, sp.groups, sp.recordLat)
	counts := make([]atomic.Int64, len(topics)*sp.groups*sp.perGroup)
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	i := 0
	for ti, t := range topics {
		for g, group := range groups {
			for k := range sp.perGroup {
				c, err := s.e.dialAddr(s.addr)
				if err != nil {
					r.Err = errString(err)
					return r
				}
				closers = append(closers, func() { c.Close() })
				id := fmt.Sprintf("bench-t%d-g%d-c%d", ti, g, k)
				sub, err := c.Subscribe(ctx, t, group, tr.handler(g, &counts[i]),
					client.Prefetch(s.o.prefetch), client.ConsumerClientID(id))
				if err != nil {
					r.Err = errString(err)
					return r
				}
				closers = append(closers, func() { sub.Close() })
				i++
			}
		}
	}
	var due func(int) time.Time
	if sp.rate > 0 {
		t0 := time.Now().Add(10 * time.Millisecond)
		iv := float64(time.Second) / sp.rate
		due = func(i int) time.Time { return t0.Add(time.Duration(float64(i) * iv)) }
	}
	st := s.pipelined(ctx, topics, sp.n, sp.size, due)
	r.Msgs, r.Capped, r.Err = st.acked, st.capped, errString(st.firstE)
	r.PubSecs = st.lastAck.Sub(st.start).Seconds()
	tr.expected.Store(int64(st.acked) * int64(sp.groups))
	if tr.uniq.Load() >= tr.expected.Load() {
		tr.finish()
	}
	select {
	case <-tr.done:
	case <-time.After(s.o.hard):
		if r.Err == "" {
			r.Err = fmt.Sprintf("timeout: %d of %d deliveries", tr.uniq.Load(), tr.expected.Load())
		}
		tr.doneAt.Store(time.Now().UnixNano())
	case <-ctx.Done():
		r.Err = errString(ctx.Err())
		tr.doneAt.Store(time.Now().UnixNano())
	}
	r.Delivered, r.Dups = tr.uniq.Load(), tr.dups.Load()
	for i := range counts {
		r.PerConsumer = append(r.PerConsumer, counts[i].Load())
	}
	r.Secs = time.Unix(0, tr.doneAt.Load()).Sub(st.start).Seconds()
	if r.Secs > 0 {
		r.MsgsPerSec = float64(st.acked) / r.Secs
		r.MBPerSec = r.MsgsPerSec * float64(sp.size) / 1e6
	}
	if sp.recordLat {
		tr.mu.Lock()
		r.P50, r.P90, r.P99, r.Max = latencies(tr.lat)
		_, _, _, r.SchedMax = latencies(tr.latSched)
		r.SchedP50, r.SchedP99 = nearestRankOr0(tr.latSched, .5), nearestRankOr0(tr.latSched, .99)
		tr.mu.Unlock()
	}
	return r
}

// nearestRankOr0 is nearestRank of an already sorted slice, 0 when empty.
func nearestRankOr0(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return nearestRank(sorted, q)
}
