package rpc

import (
	"context"
	"fmt"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/meta"
	"google.golang.org/grpc/peer"
)

// Heartbeat implements dmq.v1.Broker.
func (s *Service) Heartbeat(ctx context.Context, req *dmqv1.HeartbeatRequest) (*dmqv1.HeartbeatResponse, error) {
	c := meta.Client{ID: req.ClientId, Host: req.Host, Pid: req.Pid, SDKVersion: req.SdkVersion, Produces: req.Produces, Left: req.Leaving}
	for _, sub := range req.Consumes {
		c.Consumes = append(c.Consumes, meta.ClientSub{Topic: sub.Topic, Group: sub.Group})
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	if err := s.brokerOf(ctx).Heartbeat(c, addr); err != nil {
		return nil, toStatus(err)
	}
	return &dmqv1.HeartbeatResponse{IntervalMs: s.brokerOf(ctx).Config().HeartbeatInterval.Milliseconds()}, nil
}

// ListClients implements dmq.v1.Broker.
func (s *Service) ListClients(ctx context.Context, req *dmqv1.ListClientsRequest) (*dmqv1.ListClientsResponse, error) {
	if req.Group != "" && req.Topic == "" {
		return nil, invalid("a group filter needs its topic")
	}
	resp := &dmqv1.ListClientsResponse{}
	for _, c := range s.brokerOf(ctx).ListClients(broker.ClientFilter{Topic: req.Topic, Group: req.Group, Online: req.Online}) {
		resp.Clients = append(resp.Clients, clientProto(c))
	}
	return resp, nil
}

func clientProto(c broker.ClientInfo) *dmqv1.ClientInfo {
	ci := &dmqv1.ClientInfo{
		ClientId: c.ID, Host: c.Host, Address: c.Address, Pid: c.Pid, SdkVersion: c.SDKVersion,
		Produces: c.Produces, Online: c.Online, ConnectedSinceMs: c.ConnectedSinceMs, LastSeenMs: c.LastSeenMs,
	}
	if len(c.Produces) > 0 {
		ci.Roles = append(ci.Roles, "producer")
	}
	if len(c.Consumes) > 0 {
		ci.Roles = append(ci.Roles, "consumer")
	}
	for _, sub := range c.Consumes {
		ci.Consumes = append(ci.Consumes, &dmqv1.Subscription{Topic: sub.Topic, Group: sub.Group})
	}
	return ci
}

// DeleteClients implements dmq.v1.Broker.
func (s *Service) DeleteClients(ctx context.Context, req *dmqv1.DeleteClientsRequest) (*dmqv1.DeleteClientsResponse, error) {
	n, err := s.brokerOf(ctx).DeleteClients(req.ClientId, req.AllOffline)
	if err != nil {
		return nil, toStatus(err)
	}
	target := req.ClientId
	if req.AllOffline {
		target = "all offline"
	}
	s.audit(ctx, "clients.delete", target, fmt.Sprintf("%d deleted", n))
	return &dmqv1.DeleteClientsResponse{Count: uint64(n)}, nil
}
