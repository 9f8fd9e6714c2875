package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scriptedBroker answers each publish (a unary call, or a batch on a stream) with the
// next of its answers: an error code for every message of it, or OK.
type scriptedBroker struct {
	mu      sync.Mutex
	answers []codes.Code
	ids     []string // the client message ids of every attempt
}

func startScripted(t *testing.T, answers ...codes.Code) (*scriptedBroker, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &scriptedBroker{answers: answers}
	s := grpc.NewServer(grpc.UnknownServiceHandler(b.serve))
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b, lis.Addr().String()
}

// next is the answer to one attempt carrying ids.
func (b *scriptedBroker) next(ids []string) codes.Code {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ids = append(b.ids, ids...)
	if len(b.answers) == 0 {
		return codes.OK
	}
	c := b.answers[0]
	b.answers = b.answers[1:]
	return c
}

func (b *scriptedBroker) results(req *dmqv1.PublishRequest) []*dmqv1.PublishResult {
	ids := make([]string, len(req.Messages))
	for i, m := range req.Messages {
		ids[i] = m.ClientMessageId
	}
	code := b.next(ids)
	rs := make([]*dmqv1.PublishResult, len(req.Messages))
	for i := range rs {
		rs[i] = &dmqv1.PublishResult{Id: "0"}
		if code != codes.OK {
			rs[i] = &dmqv1.PublishResult{Error: &dmqv1.Error{Code: int32(code), Message: "scripted " + code.String()}}
		}
	}
	return rs
}

func (b *scriptedBroker) serve(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	switch {
	case strings.HasSuffix(method, "/PublishStream"):
		for {
			req := new(dmqv1.PublishRequest)
			if err := stream.RecvMsg(req); err != nil {
				return nil
			}
			if err := stream.SendMsg(&dmqv1.PublishResponse{Sequence: req.Sequence, Results: b.results(req)}); err != nil {
				return err
			}
		}
	case strings.HasSuffix(method, "/Publish"):
		req := new(dmqv1.PublishRequest)
		if err := stream.RecvMsg(req); err != nil {
			return err
		}
		rs := b.results(req)
		if e := rs[0].Error; e != nil && codes.Code(e.Code) == codes.Unavailable {
			return status.Error(codes.Unavailable, e.Message) // as a broker that went away answers
		}
		return stream.SendMsg(&dmqv1.PublishResponse{Results: rs})
	case strings.HasSuffix(method, "/Heartbeat"):
		if err := stream.RecvMsg(new(dmqv1.HeartbeatRequest)); err != nil {
			return err
		}
		return stream.SendMsg(&dmqv1.HeartbeatResponse{})
	}
	return status.Error(codes.Unimplemented, method)
}

// A publish whose first attempt failed ambiguously (Unavailable: the broker may have
// stored it) and whose resend was refused (disk full: this attempt stored nothing) may
// be stored: its error says so (ErrOutcomeUnknown, code Unavailable), where a refusal of
// the first attempt says "not stored" (its own code). The resend carries the same
// client message id.
func TestARefusedResendLeavesTheOutcomeUnknown(t *testing.T) {
	retry := client.RetryPolicy{Attempts: 5, Backoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	for _, tc := range []struct {
		name    string
		publish func(c *client.Client) error
	}{
		{"publish", func(c *client.Client) error {
			_, err := c.Publish(context.Background(), "orders", &client.Message{Body: []byte("x")})
			return err
		}},
		{"producer", func(c *client.Client) error {
			p := c.NewProducer("orders", client.ProducerRetry(retry))
			defer p.Close()
			_, err := p.Publish(context.Background(), &client.Message{Body: []byte("x")})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, addr := startScripted(t, codes.ResourceExhausted)
			c := dial(t, addr, client.WithRetry(retry))
			if err := tc.publish(c); client.Code(err) != codes.ResourceExhausted || errors.Is(err, client.ErrOutcomeUnknown) {
				t.Fatalf("a first attempt refused: %v, want ResourceExhausted (not stored)", err)
			}

			b, addr = startScripted(t, codes.Unavailable, codes.ResourceExhausted)
			c = dial(t, addr, client.WithRetry(retry))
			err := tc.publish(c)
			if !errors.Is(err, client.ErrOutcomeUnknown) || client.Code(err) != codes.Unavailable {
				t.Fatalf("a resend refused after an ambiguous failure: %v, want ErrOutcomeUnknown with code Unavailable", err)
			}
			if !strings.Contains(err.Error(), "scripted ResourceExhausted") {
				t.Fatalf("the error %q does not carry the last refusal", err)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.ids) != 2 || b.ids[0] != b.ids[1] {
				t.Fatalf("client message ids of the attempts: %q, want two equal ones", b.ids)
			}
		})
	}
}
