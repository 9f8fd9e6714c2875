// Package admin serves the broker's HTTP side for operators: Prometheus
// metrics (NewCollector) and the JSON admin API under /api/v1/ (NewAPI,
// documented in docs/api.md).
package admin

import (
	"time"

	"github.com/dmqio/dmq/internal/broker"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads topic and group state from the broker at scrape time, so
// the numbers are never stale and cost nothing between scrapes.
type collector struct {
	b *broker.Broker

	topicMessages, topicBytes, topicSegments, delayedPending *prometheus.Desc
	backlog, inFlight, deadLetters, members, oldestUnacked   *prometheus.Desc
	abandoned                                                *prometheus.Desc
	produced, consumed, failures                             *prometheus.Desc
}

// NewCollector returns a Prometheus collector of b's topics and groups.
func NewCollector(b *broker.Broker) prometheus.Collector {
	topic := []string{"topic"}
	group := []string{"topic", "group"}
	return &collector{
		b:              b,
		topicMessages:  prometheus.NewDesc("dmq_topic_stored_messages", "Messages stored in the topic's log.", topic, nil),
		topicBytes:     prometheus.NewDesc("dmq_topic_stored_bytes", "Bytes of the topic's log segments.", topic, nil),
		topicSegments:  prometheus.NewDesc("dmq_topic_segments", "Log segments of the topic.", topic, nil),
		delayedPending: prometheus.NewDesc("dmq_topic_delayed_pending", "Delayed messages waiting for their time.", topic, nil),
		backlog:        prometheus.NewDesc("dmq_group_backlog", "Messages stored but not yet acked by the group.", group, nil),
		inFlight:       prometheus.NewDesc("dmq_group_in_flight", "Messages delivered and waiting for their ack.", group, nil),
		deadLetters:    prometheus.NewDesc("dmq_group_dead_letters", "Messages in the group's dead-letter queue.", group, nil),
		members:        prometheus.NewDesc("dmq_group_members_online", "Consumers connected to the group.", group, nil),
		oldestUnacked:  prometheus.NewDesc("dmq_group_oldest_unacked_age_seconds", "How long the group's oldest unacked message has waited since it was published (0: caught up).", group, nil),
		abandoned:      prometheus.NewDesc("dmq_group_abandoned", "1 when the group has no member connected and its oldest unacked message waited longer than abandoned_group_after: it holds messages back from retention for nobody (delete it: dmq group delete).", group, nil),
		produced:       prometheus.NewDesc("dmq_messages_produced_total", "Messages stored for producers since the broker started.", topic, nil),
		consumed:       prometheus.NewDesc("dmq_messages_consumed_total", "Messages acked by consumers since the broker started.", topic, nil),
		failures:       prometheus.NewDesc("dmq_consume_failures_total", "Failed deliveries (nacks, ack timeouts, consumers gone) since the broker started.", topic, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.topicMessages, c.topicBytes, c.topicSegments, c.delayedPending,
		c.backlog, c.inFlight, c.deadLetters, c.members, c.oldestUnacked, c.abandoned, c.produced, c.consumed, c.failures} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	now := time.Now()
	for topic, n := range c.b.CounterTotals() {
		ch <- prometheus.MustNewConstMetric(c.produced, prometheus.CounterValue, float64(n[0]), topic)
		ch <- prometheus.MustNewConstMetric(c.consumed, prometheus.CounterValue, float64(n[1]), topic)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(n[2]), topic)
	}
	for _, t := range c.b.ListTopics(broker.TopicFilter{}) {
		gauge(c.topicMessages, float64(t.NextOffset-t.FirstOffset), t.Name)
		gauge(c.topicBytes, float64(t.StoredBytes), t.Name)
		gauge(c.topicSegments, float64(t.Segments), t.Name)
		gauge(c.delayedPending, float64(t.DelayedPending), t.Name)
		groups, err := c.b.ListGroups(t.Name)
		if err != nil {
			continue // deleted meanwhile
		}
		for _, g := range groups {
			gauge(c.backlog, float64(g.Backlog), t.Name, g.Name)
			gauge(c.inFlight, float64(g.InFlight), t.Name, g.Name)
			gauge(c.deadLetters, float64(g.DeadLetters), t.Name, g.Name)
			gauge(c.members, float64(g.MembersOnline), t.Name, g.Name)
			gauge(c.oldestUnacked, g.OldestUnackedAge(now).Seconds(), t.Name, g.Name)
			abandoned := 0.0
			if g.Abandoned {
				abandoned = 1
			}
			gauge(c.abandoned, abandoned, t.Name, g.Name)
		}
	}
}
