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
	dto "github.com/prometheus/client_model/go"
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
		if f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != want || labelOf(f.Metric[0], "topic") != topic {
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

// A group's backlog and the age of its oldest unacked message show in the
// group and, minute by minute, in the topic's stats; the value at the end
// of a minute is kept across a restart.
func TestGroupBacklogAndOldestUnackedAgePerMinute(t *testing.T) {
	dir := t.TempDir()
	s := dmqtest.Start(t, dir, nil)
	admin := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.stats.backlog"
	setupTopic(t, admin, topic, client.GroupSpec{Name: "slow"})
	from := time.Now().Add(-2 * time.Minute)
	published := time.Now()
	publishN(t, admin, topic, 10)

	// Nobody consumes: the backlog is 10 and the oldest waits longer and longer.
	const waited = 300 * time.Millisecond
	dmqtest.Eventually(t, 5*time.Second, "backlog 10 with the oldest unacked waiting 300 ms", func() bool {
		g, err := admin.GetGroup(ctx, topic, "slow")
		return err == nil && g.Stats.Backlog == 10 && g.Stats.OldestUnackedAgeMs >= waited.Milliseconds()
	})
	groupSeries := func(c *client.Client) (backlog, age []uint64, max uint64) {
		t.Helper()
		st, err := c.TopicStats(ctx, topic, client.StatsQuery{From: from, To: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Groups) != 1 || st.Groups[0].Group != "slow" {
			t.Fatalf("stats groups = %v, want one series for group slow", st.Groups)
		}
		for _, m := range st.Groups[0].Minutes {
			backlog, age = append(backlog, m.Backlog), append(age, m.OldestUnackedAgeMs)
		}
		return backlog, age, st.Groups[0].Backlog.Max
	}
	backlog, age, _ := groupSeries(admin)
	// Stored times are whole milliseconds, cut down: an age may exceed the
	// elapsed time measured here by one.
	if last, most := len(backlog)-1, time.Since(published).Milliseconds()+1; backlog[last] != 10 || age[last] < uint64(waited.Milliseconds()) || age[last] > uint64(most) {
		t.Fatalf("current minute: backlog %d, oldest unacked age %d ms; want 10 and between %d and %d ms",
			backlog[last], age[last], waited.Milliseconds(), most)
	}

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
	if f := families["dmq_group_oldest_unacked_age_seconds"]; f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() < waited.Seconds() {
		t.Errorf("dmq_group_oldest_unacked_age_seconds = %v, want one series of at least %v", f, waited.Seconds())
	}

	// The shutdown writes the minute's state; after the restart the group
	// drains, and the range still shows the backlog it had.
	s.Stop(t)
	s = dmqtest.Start(t, dir, nil)
	again := dmqtest.Dial(t, s.GRPCAddr())
	subscribe(t, again, topic, "slow", "c1", func(context.Context, *client.Message) error { return nil })
	waitAcked(t, again, topic, "slow", 10)
	backlog, age, maxBacklog := groupSeries(again)
	if last := len(backlog) - 1; backlog[last] != 0 || age[last] != 0 || maxBacklog != 10 {
		t.Fatalf("after draining: current minute backlog %d age %d ms, max backlog over the range %d; want 0, 0, 10 (series %v)", backlog[last], age[last], maxBacklog, backlog)
	}
}

// labelOf is the value of a series' label (a cluster node adds its shard's).
func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
