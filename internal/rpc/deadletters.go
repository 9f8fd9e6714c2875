package rpc

import (
	"context"
	"fmt"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
)

func deadLetterProto(topic, group string, d broker.DeadLetter) *dmqv1.DeadLetter {
	m := d.Message
	return &dmqv1.DeadLetter{
		Message: &dmqv1.Message{
			Id: broker.FormatOffset(d.Offset), Topic: topic, Key: m.Key, Headers: m.Headers, Body: m.Body,
			PublishedAtMs: m.PublishedAtMs, Attempt: d.Attempts, ClientMessageId: m.ClientMessageID,
			LastFailure: d.Reason,
		},
		Group: group, Attempts: d.Attempts, LastFailure: d.Reason, DeadAtMs: d.DeadAtMs,
	}
}

// ListDeadLetters implements dmq.v1.Broker.
func (s *Service) ListDeadLetters(ctx context.Context, req *dmqv1.ListDeadLettersRequest) (*dmqv1.ListDeadLettersResponse, error) {
	var from uint64
	if req.AfterId != "" {
		off, err := broker.ParseOffset(req.AfterId)
		if err != nil {
			return nil, toStatus(err)
		}
		from = off + 1
	}
	ds, total, err := s.brokerOf(ctx).ListDeadLetters(req.Topic, req.Group, from, int(req.Limit), req.Key)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.ListDeadLettersResponse{Total: total}
	for _, d := range ds {
		resp.DeadLetters = append(resp.DeadLetters, deadLetterProto(req.Topic, req.Group, d))
	}
	return resp, nil
}

// GetDeadLetter implements dmq.v1.Broker.
func (s *Service) GetDeadLetter(ctx context.Context, req *dmqv1.GetDeadLetterRequest) (*dmqv1.DeadLetter, error) {
	offs, err := parseIDs([]string{req.Id})
	if err != nil {
		return nil, err
	}
	d, err := s.brokerOf(ctx).GetDeadLetter(req.Topic, req.Group, offs[0])
	if err != nil {
		return nil, toStatus(err)
	}
	return deadLetterProto(req.Topic, req.Group, d), nil
}

func selector(req *dmqv1.DeadLetterSelector) (broker.DeadLetterSelector, error) {
	sel := broker.DeadLetterSelector{Key: req.Key, All: req.All}
	if len(req.Ids) > 0 {
		offs, err := parseIDs(req.Ids)
		if err != nil {
			return sel, err
		}
		sel.Offsets = offs
	}
	return sel, nil
}

// RedriveDeadLetters implements dmq.v1.Broker.
func (s *Service) RedriveDeadLetters(ctx context.Context, req *dmqv1.DeadLetterSelector) (*dmqv1.DeadLetterCount, error) {
	sel, err := selector(req)
	if err != nil {
		return nil, err
	}
	n, err := s.brokerOf(ctx).RedriveDeadLetters(req.Topic, req.Group, sel)
	if err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "deadletters.redrive", req.Topic+"/"+req.Group, fmt.Sprintf("%d redriven", n))
	return &dmqv1.DeadLetterCount{Count: uint64(n)}, nil
}

// PurgeDeadLetters implements dmq.v1.Broker.
func (s *Service) PurgeDeadLetters(ctx context.Context, req *dmqv1.DeadLetterSelector) (*dmqv1.DeadLetterCount, error) {
	sel, err := selector(req)
	if err != nil {
		return nil, err
	}
	n, err := s.brokerOf(ctx).PurgeDeadLetters(req.Topic, req.Group, sel)
	if err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "deadletters.purge", req.Topic+"/"+req.Group, fmt.Sprintf("%d purged", n))
	return &dmqv1.DeadLetterCount{Count: uint64(n)}, nil
}

// ResetGroup implements dmq.v1.Broker.
func (s *Service) ResetGroup(ctx context.Context, req *dmqv1.ResetGroupRequest) (*dmqv1.Group, error) {
	var to broker.ResetTarget
	switch t := req.To.(type) {
	case *dmqv1.ResetGroupRequest_Earliest:
		to.Earliest = t.Earliest
	case *dmqv1.ResetGroupRequest_Latest:
		to.Latest = t.Latest
	case *dmqv1.ResetGroupRequest_TimeMs:
		if t.TimeMs <= 0 {
			return nil, invalid("reset time %d ms is not a positive Unix time", t.TimeMs)
		}
		to.Time = time.UnixMilli(t.TimeMs)
	}
	gi, err := s.brokerOf(ctx).ResetGroup(req.Topic, req.Group, to)
	if err != nil {
		return nil, toStatus(err)
	}
	s.audit(ctx, "group.reset", req.Topic+"/"+req.Group, fmt.Sprintf("to offset %d", gi.AckFloor))
	return groupProto(gi, s.brokerOf(ctx).Now()), nil
}
