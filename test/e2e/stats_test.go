package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

// Per-minute counters match what was published and consumed, with total,
// max and min over the range; narrowing by client gives its share; the
// counters survive a restart.
func TestPerMinuteCountersMatchTraffic(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	admin := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.stats.orders"
	setupTopic(t, admin, topic, client.GroupSpec{Name: "g", RetryBackoff: []time.Duration{time.Millisecond}})
	from := time.Now().Add(-5 * time.Minute)

	for _, p := range []struct {
		id string
		n  int
	}{{"p1", 30}, {"p2", 20}} {
		c := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID(p.id))
		for i := 0; i < p.n; i++ {
			if _, err := c.Publish(ctx, topic, &client.Message{Body: []byte(fmt.Sprint(p.id, i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	consumer := dmqtest.Dial(t, s.GRPCAddr(), client.WithClientID("c1"))
	var failedOnce atomic.Bool
	subscribe(t, consumer, topic, "g", "c1", func(_ context.Context, m *client.Message) error {
		if string(m.Body) == "p10" && failedOnce.CompareAndSwap(false, true) {
			return fmt.Errorf("first try fails")
		}
		return nil
	})
	waitAcked(t, admin, topic, "g", 50)

	check := func(c *client.Client, q client.StatsQuery, produced, consumed, failures uint64) {
		t.Helper()
		st, err := c.TopicStats(ctx, topic, q)
		if err != nil {
			t.Fatal(err)
		}
		if st.Produced.Total != produced || st.Consumed.Total != consumed || st.Failures.Total != failures {
			t.Fatalf("stats %+v: totals produced %d consumed %d failures %d, want %d %d %d",
				q, st.Produced.Total, st.Consumed.Total, st.Failures.Total, produced, consumed, failures)
		}
		var maxP, minP uint64 = 0, ^uint64(0)
		for _, m := range st.Minutes {
			maxP, minP = max(maxP, m.Produced), min(minP, m.Produced)
		}
		if st.Produced.Max != maxP || st.Produced.Min != minP || minP != 0 {
			t.Fatalf("produced max/min = %d/%d, want %d/%d over %d minutes (quiet minutes count as 0)", st.Produced.Max, st.Produced.Min, maxP, minP, len(st.Minutes))
		}
		if len(st.Minutes) < 5 {
			t.Fatalf("%d minutes for a range of more than 5", len(st.Minutes))
		}
	}
	q := client.StatsQuery{From: from, To: time.Now().Add(time.Minute)}
	check(admin, q, 50, 50, 1)

	// The same counters on /metrics, which parses as Prometheus text.
	resp, err := http.Get("http://" + s.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for name, want := range map[string]float64{"dmq_messages_produced_total": 50, "dmq_messages_consumed_total": 50, "dmq_consume_failures_total": 1} {
		f := families[name]
		if f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != want || f.Metric[0].Label[0].GetValue() != topic {
			t.Errorf("%s = %v, want %v for %s", name, f, want, topic)
		}
	}
	if g := families["dmq_group_backlog"]; g == nil || g.Metric[0].GetGauge().GetValue() != 0 {
		t.Errorf("dmq_group_backlog = %v, want 0", g)
	}
	check(admin, client.StatsQuery{From: q.From, To: q.To, Client: "p1"}, 30, 0, 0)
	check(admin, client.StatsQuery{From: q.From, To: q.To, Client: "c1"}, 0, 50, 1)
	check(admin, client.StatsQuery{From: q.From, To: q.To, Server: "no-such-server"}, 0, 0, 0)

	// Written at shutdown, read back after the restart.
	s.Stop(t)
	s = dmqtest.Start(t, dir, nil)
	again := dmqtest.Dial(t, s.GRPCAddr())
	check(again, q, 50, 50, 1)

	if _, err := again.TopicStats(ctx, topic, client.StatsQuery{From: time.Now().Add(-40 * 24 * time.Hour), To: time.Now().Add(-39 * 24 * time.Hour)}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("range beyond the retention: %v, want InvalidArgument", err)
	}
	if _, err := again.TopicStats(ctx, topic, client.StatsQuery{}); client.Code(err) != codes.InvalidArgument {
		t.Errorf("stats without a range: %v, want InvalidArgument", err)
	}
}
