package rpc

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
)

// GetTopicStats implements dmq.v1.Broker.
func (s *Service) GetTopicStats(_ context.Context, req *dmqv1.TopicStatsRequest) (*dmqv1.TopicStatsResponse, error) {
	if req.FromMs <= 0 || req.ToMs <= 0 {
		return nil, invalid("stats need a time range: from_ms and to_ms")
	}
	ms, err := s.b.TopicStats(broker.TopicStatsQuery{
		Topic: req.Topic, From: time.UnixMilli(req.FromMs), To: time.UnixMilli(req.ToMs),
		Server: req.Server, Client: req.ClientId,
	})
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
	if ti, err := s.b.GetTopic(req.Topic); err == nil {
		resp.StoredNow = ti.NextOffset - ti.FirstOffset
	}
	return resp, nil
}
