package rpc

import (
	"context"
	"errors"
	"strings"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// AuthInterceptors authenticate every call by its token ("authorization:
// Bearer <token>" metadata) and check it against the application's grants
// before the handler runs; streams are checked message by message and end
// with Unauthenticated as soon as their token is revoked. The standard
// health and reflection services stay open.
func AuthInterceptors(reg *auth.Registry) []grpc.ServerOption {
	return AuthInterceptorsFor(func(context.Context) (*auth.Registry, error) { return reg, nil })
}

// AuthInterceptorsFor is AuthInterceptors with the registry looked up for each call
// (on a cluster node, the cluster-wide one of the shard that holds it).
func AuthInterceptorsFor(registry func(context.Context) (*auth.Registry, error)) []grpc.ServerOption {
	a := &authorizer{registry: registry}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream)}
}

type authorizer struct {
	registry func(context.Context) (*auth.Registry, error)
}

type appKey struct{}

// callerApp returns the authenticated application of a call, or nil when
// authentication is off.
func callerApp(ctx context.Context) *auth.App {
	a, _ := ctx.Value(appKey{}).(*auth.App)
	return a
}

func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (a *authorizer) authenticate(ctx context.Context) (*auth.App, *auth.Registry, <-chan struct{}, error) {
	reg, err := a.registry(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var token string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t, ok := auth.BearerToken(v); ok {
				token = t
			}
		}
	}
	app, revoked, err := reg.Authenticate(token)
	if err != nil {
		return nil, nil, nil, authStatus(err)
	}
	return app, reg, revoked, nil
}

// authStatus maps auth errors to gRPC codes.
func authStatus(err error) error {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, auth.ErrDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, auth.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, auth.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, auth.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	return toStatus(err) // a store's error: Unavailable when the node lost leadership
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if open(info.FullMethod) {
		return handler(ctx, req)
	}
	app, _, _, err := a.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if err := check(app, info.FullMethod, req); err != nil {
		return nil, authStatus(err)
	}
	resp, err := handler(context.WithValue(ctx, appKey{}, app), req)
	if l, ok := resp.(*dmqv1.ListTopicsResponse); ok && err == nil {
		visible := l.Topics[:0]
		for _, t := range l.Topics {
			if app.Sees(t.Name) {
				visible = append(visible, t)
			}
		}
		l.Topics = visible
	}
	return resp, err
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if open(info.FullMethod) {
		return handler(srv, ss)
	}
	app, reg, revoked, err := a.authenticate(ss.Context())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithValue(ss.Context(), appKey{}, app))
	defer cancel()
	go func() {
		select {
		case <-revoked:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = handler(srv, &authStream{ServerStream: ss, ctx: ctx, app: app, reg: reg, method: info.FullMethod})
	if !reg.Valid(app) {
		return status.Errorf(codes.Unauthenticated, "the token of application %q was revoked", app.Name)
	}
	return err
}

// authStream checks each message a client sends on a stream.
type authStream struct {
	grpc.ServerStream
	ctx    context.Context
	app    *auth.App
	reg    *auth.Registry
	method string
}

func (s *authStream) Context() context.Context { return s.ctx }

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.reg.Valid(s.app) {
		return status.Errorf(codes.Unauthenticated, "the token of application %q was revoked", s.app.Name)
	}
	if err := check(s.app, s.method, m); err != nil {
		return authStatus(err)
	}
	return nil
}

// check decides whether app may make the request; with authentication on,
// the names of who requests and who decides are the caller's.
func check(app *auth.App, method string, req any) error {
	sees := app.RequireSees
	manageOr := func(topic string, action auth.Action, group string) error {
		if app.Allowed(auth.Manage, topic, "") == nil {
			return nil
		}
		return app.Allowed(action, topic, group)
	}
	switch r := req.(type) {
	case *dmqv1.CreateTopicRequest:
		r.RequestedBy = "app:" + app.Name
		return app.Allowed(auth.Manage, r.Name, "")
	case *dmqv1.DeleteTopicRequest:
		return app.Allowed(auth.Manage, r.Name, "")
	case *dmqv1.GetTopicRequest:
		return sees(r.Name)
	case *dmqv1.ListTopicsRequest, *dmqv1.HeartbeatRequest, *dmqv1.ServerInfoRequest:
		return nil // topic lists are filtered to what the caller sees
	case *dmqv1.TopicDecision:
		r.By = "app:" + app.Name
		return app.RequireAdmin(strings.ToLower(strings.TrimPrefix(method, "/dmq.v1.Broker/")) + " topics")
	case *dmqv1.PublishRequest:
		return app.Allowed(auth.Publish, r.Topic, "")
	case *dmqv1.CreateGroupRequest:
		return manageOr(r.Topic, auth.Subscribe, r.Name)
	case *dmqv1.GetGroupRequest:
		return sees(r.Topic)
	case *dmqv1.ListGroupsRequest:
		return sees(r.Topic)
	case *dmqv1.SubscribeRequest:
		if st := r.GetStart(); st != nil {
			return app.Allowed(auth.Subscribe, st.Topic, st.Group)
		}
		return nil // credits, acks and nacks of a subscription already checked
	case *dmqv1.AckRequest:
		return app.Allowed(auth.Subscribe, r.Topic, r.Group)
	case *dmqv1.NackRequest:
		return app.Allowed(auth.Subscribe, r.Topic, r.Group)
	case *dmqv1.ResetGroupRequest:
		return app.Allowed(auth.Manage, r.Topic, "")
	case *dmqv1.DeleteGroupRequest:
		return app.Allowed(auth.Manage, r.Topic, "")
	case *dmqv1.ListDeadLettersRequest:
		return manageOr(r.Topic, auth.Subscribe, r.Group)
	case *dmqv1.GetDeadLetterRequest:
		return manageOr(r.Topic, auth.Subscribe, r.Group)
	case *dmqv1.DeadLetterSelector:
		return app.Allowed(auth.Manage, r.Topic, "")
	case *dmqv1.ListDelayedRequest:
		return sees(r.Topic)
	case *dmqv1.CancelDelayedRequest:
		return manageOr(r.Topic, auth.Publish, "")
	case *dmqv1.ListClientsRequest:
		if r.Topic != "" {
			return sees(r.Topic)
		}
		return app.RequireAdmin("list the clients of every topic")
	case *dmqv1.DeleteClientsRequest:
		return app.RequireAdmin("delete clients")
	case *dmqv1.TopicStatsRequest:
		return sees(r.Topic)
	case *dmqv1.GetTraceRequest:
		return sees(r.Topic)
	case *dmqv1.SearchTraceRequest:
		return sees(r.Topic)
	case *dmqv1.CreateTokenRequest, *dmqv1.RevokeTokenRequest, *dmqv1.ListTokensRequest:
		return app.RequireAdmin("manage tokens")
	case *dmqv1.CreateUserRequest, *dmqv1.DeleteUserRequest, *dmqv1.ListUsersRequest:
		return app.RequireAdmin("manage users")
	case *dmqv1.ListAuditRequest:
		return app.RequireAdmin("read the audit log")
	}
	return app.RequireAdmin("call " + method) // a method added without a rule: administrators only
}
