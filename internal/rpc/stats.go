package rpc

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
)

// GetTopicStats implements dmq.v1.Broker.
func (s *Service) GetTopicStats(ctx context.Context, req *dmqv1.TopicStatsRequest) (*dmqv1.TopicStatsResponse, error) {
	if req.FromMs <= 0 || req.ToMs <= 0 {
		return nil, invalid("stats need a time range: from_ms and to_ms")
	}
	q := broker.TopicStatsQuery{
		Topic: req.Topic, From: time.UnixMilli(req.FromMs), To: time.UnixMilli(req.ToMs),
		Server: req.Server, Client: req.ClientId,
	}
	ms, err := s.brokerOf(ctx).TopicStats(q)
	if err != nil {
		return nil, toStatus(err)
	}
	groups, err := s.brokerOf(ctx).GroupStats(q)
	if err != nil {
		return nil, toStatus(err)
	}
	summary := func(s broker.Summary) *dmqv1.CounterSummary {
		return &dmqv1.CounterSummary{Total: s.Total, Max: s.Max, Min: s.Min}
	}
	p, c, f := broker.Summarize(ms)
	resp := &dmqv1.TopicStatsResponse{Produced: summary(p), Consumed: summary(c), Failures: summary(f)}
	for _, m := range ms {
		resp.Minutes = append(resp.Minutes, &dmqv1.MinuteStats{MinuteMs: m.MinuteMs, Produced: m.Produced, Consumed: m.Consumed, Failures: m.Failures, Stored: m.Stored})
	}
	for _, g := range groups {
		backlog, age := broker.SummarizeGroup(g.Minutes)
		gs := &dmqv1.GroupMinuteSeries{Group: g.Group, Backlog: summary(backlog), OldestUnackedAgeMs: summary(age)}
		for _, m := range g.Minutes {
			gs.Minutes = append(gs.Minutes, &dmqv1.GroupMinute{MinuteMs: m.MinuteMs, Backlog: m.Backlog, OldestUnackedAgeMs: m.OldestUnackedAgeMs})
		}
		resp.Groups = append(resp.Groups, gs)
	}
	if ti, err := s.brokerOf(ctx).GetTopic(req.Topic); err == nil {
		resp.StoredNow = ti.NextOffset - ti.FirstOffset
	}
	return resp, nil
}
