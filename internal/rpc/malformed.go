package rpc

import (
	"context"

	"github.com/dmqio/dmq/internal/bufpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MalformedInterceptors refuse, with InvalidArgument, the requests the server's codec
// could not decode (recorded in t, see bufpool.Malformed): a client's bad bytes, which
// gRPC would answer with Internal. They must come first in the chain, so that every
// decoded request passes through them.
func MalformedInterceptors(t *bufpool.Malformed) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := t.Take(req); err != nil {
				return nil, malformed(err)
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &malformedStream{ServerStream: ss, t: t})
		}),
	}
}

func malformed(err error) error {
	return status.Errorf(codes.InvalidArgument, "malformed request: it is not a valid protobuf message of this method: %v", err)
}

// malformedStream refuses a stream message its codec could not decode.
type malformedStream struct {
	grpc.ServerStream
	t *bufpool.Malformed
}

func (s *malformedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.t.Take(m); err != nil {
		return malformed(err)
	}
	return nil
}
