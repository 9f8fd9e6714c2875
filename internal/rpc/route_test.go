package rpc

import (
	"context"
	"errors"
	"testing"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// routerFunc is a Router for tests; it counts its calls.
type routerFunc struct {
	calls int
	route func(topic string) (*Backend, error)
}

func (r *routerFunc) Route(_ context.Context, topic string) (*Backend, func(), error) {
	r.calls++
	b, err := r.route(topic)
	return b, func() {}, err
}

// queueStream is a server stream whose client sent msgs.
type queueStream struct {
	grpc.ServerStream
	msgs []proto.Message
}

func (q *queueStream) Context() context.Context { return context.Background() }

func (q *queueStream) RecvMsg(m any) error {
	if len(q.msgs) == 0 {
		return errors.New("no more messages")
	}
	proto.Merge(m.(proto.Message), q.msgs[0])
	q.msgs = q.msgs[1:]
	return nil
}

func pub(topic string) proto.Message { return &dmqv1.PublishRequest{Topic: topic} }

// A stream is bound to the backend of its first message's topic; a later message about
// another shard's topic is refused, one that finds its shard's broker replaced ends the
// stream as unavailable, a router's refusal is passed on, and messages naming no topic
// (credits, acks) are not routed.
func TestRoutedStreamStaysWithOneBackend(t *testing.T) {
	s1, s2 := &Backend{Shard: "s1"}, &Backend{Shard: "s2"}
	s1again := &Backend{Shard: "s1"}
	notLeader := status.Error(codes.Unavailable, "not the leader")
	for _, c := range []struct {
		name   string
		msgs   []proto.Message
		routes map[string]*Backend
		want   codes.Code
		calls  int
	}{
		{"one shard", []proto.Message{pub("a"), pub("a")}, map[string]*Backend{"a": s1}, codes.Unknown, 2},
		{"another shard", []proto.Message{pub("a"), pub("b")}, map[string]*Backend{"a": s1, "b": s2}, codes.FailedPrecondition, 2},
		{"shard reopened", []proto.Message{pub("a"), pub("c")}, map[string]*Backend{"a": s1, "c": s1again}, codes.Unavailable, 2},
		{"not the leader", []proto.Message{pub("x")}, map[string]*Backend{}, codes.Unavailable, 1},
		{"credits are not routed", []proto.Message{
			&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: "a"}}},
			&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: 5}},
		}, map[string]*Backend{"a": s1}, codes.Unknown, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &routerFunc{route: func(topic string) (*Backend, error) {
				if b := c.routes[topic]; b != nil {
					return b, nil
				}
				return nil, notLeader
			}}
			slot := &backendSlot{}
			rs := &routedStream{ServerStream: &queueStream{msgs: c.msgs}, ctx: context.Background(), slot: slot, r: r}
			var err error
			for range c.msgs {
				m := proto.Clone(c.msgs[0])
				proto.Reset(m)
				if err = rs.RecvMsg(m); err != nil {
					break
				}
				if slot.get() == nil {
					t.Fatal("a received message left the stream without backend")
				}
			}
			if got := status.Code(err); (err == nil && c.want != codes.Unknown) || (err != nil && got != c.want) {
				t.Fatalf("stream ended with %v, want %v", err, c.want)
			}
			if r.calls != c.calls {
				t.Fatalf("%d routings, want %d", r.calls, c.calls)
			}
		})
	}
}
