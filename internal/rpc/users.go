package rpc

import (
	"context"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/meta"
	"google.golang.org/grpc/peer"
)

// actor names who calls, for the audit log.
func actor(ctx context.Context) string {
	if a := callerApp(ctx); a != nil {
		return "app:" + a.Name
	}
	return "unauthenticated"
}

// audit records an administrative action made over gRPC; a failure to
// write is logged, the action stands.
func (s *Service) audit(ctx context.Context, action, target, detail string) {
	e := meta.AuditEntry{TimeMs: time.Now().UnixMilli(), Who: actor(ctx), Action: action, Target: target, Detail: detail}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.From = p.Addr.String()
	}
	if err := s.brokerOf(ctx).Store().AddAudit(e); err != nil {
		s.brokerOf(ctx).Logger().Error("write audit entry", "action", action, "err", err)
	}
}

func userProto(u auth.User) *dmqv1.User {
	return &dmqv1.User{Name: u.Name, Role: u.Role, Department: u.Department, CreatedAtMs: u.CreatedAtMs, CreatedBy: u.CreatedBy}
}

// CreateUser implements dmq.v1.Broker.
func (s *Service) CreateUser(ctx context.Context, req *dmqv1.CreateUserRequest) (*dmqv1.User, error) {
	u, err := s.appsOf(ctx).CreateUser(auth.User{Name: req.Name, Role: req.Role, Department: req.Department}, req.Password, actor(ctx))
	if err != nil {
		return nil, authStatus(err)
	}
	s.audit(ctx, "user.create", u.Name, "role "+u.Role+" "+u.Department)
	return userProto(u), nil
}

// DeleteUser implements dmq.v1.Broker.
func (s *Service) DeleteUser(ctx context.Context, req *dmqv1.DeleteUserRequest) (*dmqv1.DeleteUserResponse, error) {
	if err := s.appsOf(ctx).DeleteUser(req.Name); err != nil {
		return nil, authStatus(err)
	}
	s.audit(ctx, "user.delete", req.Name, "")
	return &dmqv1.DeleteUserResponse{}, nil
}

// ListUsers implements dmq.v1.Broker.
func (s *Service) ListUsers(ctx context.Context, _ *dmqv1.ListUsersRequest) (*dmqv1.ListUsersResponse, error) {
	resp := &dmqv1.ListUsersResponse{}
	for _, u := range s.appsOf(ctx).ListUsers() {
		resp.Users = append(resp.Users, userProto(u))
	}
	return resp, nil
}

// ListAudit implements dmq.v1.Broker.
func (s *Service) ListAudit(ctx context.Context, req *dmqv1.ListAuditRequest) (*dmqv1.ListAuditResponse, error) {
	limit := int(req.Limit)
	if limit == 0 {
		limit = 100
	}
	if limit < 0 || limit > 1000 {
		return nil, invalid("limit %d: from 1 to 1000", req.Limit)
	}
	es, err := s.brokerOf(ctx).Store().ListAudit(meta.AuditFilter{FromMs: req.FromMs, ToMs: req.ToMs, Who: req.Who, Action: req.Action, Limit: limit})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &dmqv1.ListAuditResponse{}
	for _, e := range es {
		resp.Entries = append(resp.Entries, &dmqv1.AuditEntry{TimeMs: e.TimeMs, Who: e.Who, Action: e.Action, Target: e.Target, From: e.From, Detail: e.Detail})
	}
	return resp, nil
}
