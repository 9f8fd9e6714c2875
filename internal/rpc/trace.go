package rpc

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/meta"
)

func traceProto(es []meta.TraceEvent) []*dmqv1.TraceEvent {
	out := make([]*dmqv1.TraceEvent, len(es))
	for i, e := range es {
		te := &dmqv1.TraceEvent{Kind: e.Kind, TimeMs: e.TimeMs, Group: e.Group, ClientId: e.Client, Address: e.Addr,
			Attempt: e.Attempt, Reason: e.Reason, DelayedId: e.DelayID}
		if e.Count > 0 {
			te.FirstId, te.Count = broker.FormatOffset(e.Offset), e.Count
		} else if e.Kind == "due" {
			te.MessageId = broker.FormatOffset(e.Offset)
		}
		out[i] = te
	}
	return out
}

// GetTrace implements dmq.v1.Broker.
func (s *Service) GetTrace(ctx context.Context, req *dmqv1.GetTraceRequest) (*dmqv1.MessageTrace, error) {
	es, err := s.brokerOf(ctx).TraceOf(req.Topic, req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &dmqv1.MessageTrace{Id: req.Id, Events: traceProto(es)}, nil
}

// SearchTrace implements dmq.v1.Broker.
func (s *Service) SearchTrace(ctx context.Context, req *dmqv1.SearchTraceRequest) (*dmqv1.SearchTraceResponse, error) {
	if req.FromMs <= 0 || req.ToMs <= 0 {
		return nil, invalid("a trace search needs a time range: from_ms and to_ms")
	}
	ms, err := s.brokerOf(ctx).TraceByKey(req.Topic, req.Key, time.UnixMilli(req.FromMs), time.UnixMilli(req.ToMs), int(req.Limit))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.SearchTraceResponse{}
	for _, m := range ms {
		resp.Messages = append(resp.Messages, &dmqv1.MessageTrace{Id: broker.FormatOffset(m.Offset), Events: traceProto(m.Events)})
	}
	return resp, nil
}
