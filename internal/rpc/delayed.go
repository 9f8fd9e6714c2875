package rpc

import (
	"context"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
)

// ListDelayed implements dmq.v1.Broker.
func (s *Service) ListDelayed(ctx context.Context, req *dmqv1.ListDelayedRequest) (*dmqv1.ListDelayedResponse, error) {
	if req.FromMs < 0 || req.ToMs < 0 || (req.ToMs > 0 && req.ToMs <= req.FromMs) {
		return nil, invalid("time range [%d, %d) is empty or negative", req.FromMs, req.ToMs)
	}
	ms, total, next, err := s.brokerOf(ctx).ListDelayed(req.Topic, broker.DelayedFilter{
		FromMs: req.FromMs, ToMs: req.ToMs, Key: req.Key, AfterID: req.AfterId, Limit: int(req.Limit),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.ListDelayedResponse{Total: total, NextDueMs: next}
	for _, d := range ms {
		m := d.Message
		resp.Messages = append(resp.Messages, &dmqv1.DelayedMessage{Id: d.ID, DueMs: d.DueMs, Message: &dmqv1.Message{
			Id: d.ID, Topic: req.Topic, Key: m.Key, Headers: m.Headers, Body: m.Body,
			PublishedAtMs: m.PublishedAtMs, ClientMessageId: m.ClientMessageID,
		}})
	}
	return resp, nil
}

// CancelDelayed implements dmq.v1.Broker.
func (s *Service) CancelDelayed(ctx context.Context, req *dmqv1.CancelDelayedRequest) (*dmqv1.CancelDelayedResponse, error) {
	if err := s.brokerOf(ctx).CancelDelayed(req.Topic, req.Id); err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "delayed.cancel", req.Topic+"/"+req.Id, "")
	return &dmqv1.CancelDelayedResponse{}, nil
}
