package rpc

import (
	"context"
	"strings"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/auth"
)

func appProto(a auth.App) *dmqv1.Application {
	out := &dmqv1.Application{Name: a.Name, Admin: a.Admin, TokenPrefix: a.TokenPrefix, CreatedAtMs: a.CreatedAtMs, CreatedBy: a.CreatedBy}
	for _, g := range a.Grants {
		out.Grants = append(out.Grants, &dmqv1.TokenGrant{Pattern: g.Pattern, Publish: g.Publish, Subscribe: g.Subscribe, Manage: g.Manage, Groups: g.Groups})
	}
	return out
}

// caller names who acts: the authenticated application, or "" with
// authentication off.
func caller(ctx context.Context) string {
	if a := callerApp(ctx); a != nil {
		return a.Name
	}
	return ""
}

// CreateToken implements dmq.v1.Broker.
func (s *Service) CreateToken(ctx context.Context, req *dmqv1.CreateTokenRequest) (*dmqv1.CreateTokenResponse, error) {
	app := auth.App{Name: req.App, Admin: req.Admin}
	for _, g := range req.Grants {
		app.Grants = append(app.Grants, auth.Grant{Pattern: g.Pattern, Publish: g.Publish, Subscribe: g.Subscribe, Manage: g.Manage, Groups: g.Groups})
	}
	created, token, err := s.appsOf(ctx).Create(app, caller(ctx))
	if err != nil {
		return nil, authStatus(err)
	}
	s.brokerOf(ctx).Logger().Info("token created", "app", created.Name, "admin", created.Admin, "by", created.CreatedBy)
	s.audit(ctx, "token.create", created.Name, describeGrants(created))
	return &dmqv1.CreateTokenResponse{App: appProto(created), Token: token}, nil
}

// RevokeToken implements dmq.v1.Broker.
func (s *Service) RevokeToken(ctx context.Context, req *dmqv1.RevokeTokenRequest) (*dmqv1.RevokeTokenResponse, error) {
	if err := s.appsOf(ctx).Revoke(req.App); err != nil {
		return nil, authStatus(err)
	}
	s.brokerOf(ctx).Logger().Info("token revoked", "app", req.App, "by", caller(ctx))
	s.audit(ctx, "token.revoke", req.App, "")
	return &dmqv1.RevokeTokenResponse{}, nil
}

// ListTokens implements dmq.v1.Broker.
func (s *Service) ListTokens(ctx context.Context, _ *dmqv1.ListTokensRequest) (*dmqv1.ListTokensResponse, error) {
	resp := &dmqv1.ListTokensResponse{}
	for _, a := range s.appsOf(ctx).List() {
		resp.Apps = append(resp.Apps, appProto(a))
	}
	return resp, nil
}

// describeGrants says what an application may do, for the audit log.
func describeGrants(a auth.App) string {
	if a.Admin {
		return "administrator"
	}
	var parts []string
	for _, g := range a.Grants {
		acts := []string{}
		for _, x := range []struct {
			on   bool
			name string
		}{{g.Publish, "publish"}, {g.Subscribe, "subscribe"}, {g.Manage, "manage"}} {
			if x.on {
				acts = append(acts, x.name)
			}
		}
		parts = append(parts, g.Pattern+": "+strings.Join(acts, "+"))
	}
	return strings.Join(parts, "; ")
}
