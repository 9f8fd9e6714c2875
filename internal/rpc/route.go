package rpc

import (
	"context"
	"sync"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backend is what serves a call: a broker and the registry of the applications that
// may use it.
type Backend struct {
	// Shard names what the broker serves ("" on a single node).
	Shard  string
	Broker *broker.Broker
	Apps   *auth.Registry
}

// Router chooses the backend of each call on a cluster node, where each shard has its
// own broker and this node serves only the shards it leads.
type Router interface {
	// Route returns the backend serving calls about topic ("" for calls that name no
	// topic), or the error to answer with when this node does not serve it. release is
	// called once the call (or, for a stream, the message) is handled: until then the
	// backend stays open.
	Route(ctx context.Context, topic string) (b *Backend, release func(), err error)
}

// backendSlot holds a call's backend once it is known: at once for a unary call, after
// the first message for a stream.
type backendSlot struct {
	mu sync.Mutex
	b  *Backend
}

type slotKey struct{}

func (s *backendSlot) get() *Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// backendOf returns the backend chosen for ctx's call, or nil when the service has a
// fixed one (a single node).
func backendOf(ctx context.Context) *Backend {
	if s, ok := ctx.Value(slotKey{}).(*backendSlot); ok {
		return s.get()
	}
	return nil
}

// RoutingInterceptors choose each call's backend with r before the other interceptors
// (authentication) and the handler run: by the topic a unary request names, and by the
// first message of a stream that names one. A stream serves one backend: a later
// message about a topic another backend serves is refused, and so is a message that
// names a topic once the backend no longer serves (its shard's leader moved): the
// stream ends and the client opens one on the new leader. A stream does not keep its
// backend open while it waits for messages.
func RoutingInterceptors(r Router) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if open(info.FullMethod) {
			return handler(ctx, req)
		}
		topic, _ := shard.TopicOf(req)
		b, release, err := r.Route(ctx, topic)
		if err != nil {
			return nil, err
		}
		defer release()
		return handler(context.WithValue(ctx, slotKey{}, &backendSlot{b: b}), req)
	}), grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if open(info.FullMethod) {
			return handler(srv, ss)
		}
		slot := &backendSlot{}
		return handler(srv, &routedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), slotKey{}, slot), slot: slot, r: r})
	})}
}

// routedStream chooses its backend when a message names a topic.
type routedStream struct {
	grpc.ServerStream
	ctx  context.Context
	slot *backendSlot
	r    Router
}

func (s *routedStream) Context() context.Context { return s.ctx }

func (s *routedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	topic, named := shard.TopicOf(m)
	bound := s.slot.get()
	if !named && bound != nil {
		return nil // credits, acks and nacks of a subscription
	}
	b, release, err := s.r.Route(s.ctx, topic)
	if err != nil {
		return err
	}
	release()
	switch {
	case bound != nil && b.Shard == bound.Shard && b != bound:
		// The shard's broker on this node was closed and opened again (leadership
		// lost and regained): what the stream held is gone.
		return status.Errorf(codes.Unavailable, "dmq: shard %s changed leaders during this stream: open it again", b.Shard)
	case bound != nil && b != bound:
		return status.Errorf(codes.FailedPrecondition, "dmq: topic %s is on another shard than this stream's earlier messages: open one stream per shard", topic)
	}
	s.slot.mu.Lock()
	s.slot.b = b
	s.slot.mu.Unlock()
	return nil
}
