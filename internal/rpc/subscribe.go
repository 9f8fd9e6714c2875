package rpc

import (
	"context"
	"errors"
	"io"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/internal/broker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Subscribe implements dmq.v1.Broker. One goroutine reads the client's
// credits, acks and nacks and applies them; this handler's goroutine is the
// only one that sends, as gRPC requires.
func (s *Service) Subscribe(stream dmqv1.Broker_SubscribeServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return invalid("the first message of a subscription must be a start")
	}
	sub, err := s.brokerOf(ctx).Subscribe(start.Topic, start.Group, start.ClientId)
	if err != nil {
		return toStatus(err)
	}
	defer sub.Close()
	gi, err := s.brokerOf(ctx).GetGroup(start.Topic, start.Group)
	if err != nil {
		return toStatus(err)
	}
	if err := stream.Send(&dmqv1.SubscribeResponse{Response: &dmqv1.SubscribeResponse_Subscribed{
		Subscribed: &dmqv1.Subscribed{ClientId: sub.ClientID(), Group: groupProto(gi, s.brokerOf(ctx).Now())},
	}}); err != nil {
		return err
	}
	if start.Credit > 0 {
		if err := sub.Grant(start.Credit); err != nil {
			return toStatus(err)
		}
	}

	// problems carries per-request errors (a bad ack id) from the reader to
	// the sender; the stream stays open. readerDone ends the stream.
	problems := make(chan *dmqv1.Error, 64)
	readerDone := make(chan error, 1)
	go func() { readerDone <- readRequests(ctx, stream, sub, problems) }()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readerDone:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-sub.Done():
			return toStatus(sub.Err())
		case pe := <-problems:
			if err := stream.Send(&dmqv1.SubscribeResponse{Response: &dmqv1.SubscribeResponse_Error{Error: pe}}); err != nil {
				return err
			}
		case <-sub.Ready():
			ds := sub.Take()
			if len(ds) == 0 {
				continue
			}
			msgs, err := deliveryProtos(start.Topic, ds)
			if err != nil {
				return status.Error(codes.DataLoss, err.Error())
			}
			if err := stream.Send(&dmqv1.SubscribeResponse{Response: &dmqv1.SubscribeResponse_Deliveries{
				Deliveries: &dmqv1.Deliveries{Messages: msgs},
			}}); err != nil {
				return err
			}
		}
	}
}

// readRequests applies the client's requests until the stream ends. Errors
// about one request go to problems; it returns the error that ended the stream.
func readRequests(ctx context.Context, stream dmqv1.Broker_SubscribeServer, sub *broker.Subscription, problems chan<- *dmqv1.Error) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		switch r := req.Request.(type) {
		case *dmqv1.SubscribeRequest_Credit:
			err = sub.Grant(r.Credit)
		case *dmqv1.SubscribeRequest_Ack:
			var offs []uint64
			if offs, err = parseIDs(r.Ack.Ids); err == nil {
				err = sub.Ack(offs)
			}
		case *dmqv1.SubscribeRequest_Nack:
			var offs []uint64
			if offs, err = parseIDs(r.Nack.Ids); err == nil {
				err = sub.Nack(offs, r.Nack.Reason)
			}
		case *dmqv1.SubscribeRequest_Start:
			err = invalid("subscription already started")
		default:
			err = invalid("empty subscribe request")
		}
		if err != nil {
			select {
			case problems <- protoError(err):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
