package server

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

// Calls about every shard (the list of topics) are answered by the node that receives
// them: it asks each shard's broker, its own or the leader's on another node, and
// merges the answers.

// fanoutInterceptor answers ListTopics on a cluster of several shards from every shard.
// The parts it sends carry the shard they are for (shardHeader), which Route follows.
func (c *clusterNode) fanoutInterceptor() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod != dmqv1.Broker_ListTopics_FullMethodName || len(c.shards) == 1 || hasShardHeader(ctx) {
			return handler(ctx, req)
		}
		in, _ := metadata.FromIncomingContext(ctx)
		var topics []*dmqv1.Topic
		for _, sh := range c.shards {
			var resp any
			var err error
			if sh.leading() != nil {
				md := in.Copy()
				md.Set(shardHeader, sh.name)
				resp, err = handler(metadata.NewIncomingContext(ctx, md), req)
			} else {
				resp, err = c.askLeader(ctx, in, sh, req.(*dmqv1.ListTopicsRequest))
			}
			if err != nil {
				return nil, err // a partial list would read as topics that do not exist
			}
			topics = append(topics, resp.(*dmqv1.ListTopicsResponse).Topics...)
		}
		slices.SortFunc(topics, func(a, b *dmqv1.Topic) int { return strings.Compare(a.Name, b.Name) })
		return &dmqv1.ListTopicsResponse{Topics: topics}, nil
	})
}

func hasShardHeader(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(shardHeader)) > 0
}

// askLeader sends a shard's part of ListTopics to the shard's leader, with the caller's
// credentials.
func (c *clusterNode) askLeader(ctx context.Context, in metadata.MD, sh *shardReplica, req *dmqv1.ListTopicsRequest) (any, error) {
	leader := sh.leaderAddrs()
	if leader.GRPC == "" {
		return nil, status.Errorf(codes.Unavailable, "dmq: shard %s has no leader yet (an election is in progress)", sh.name)
	}
	out := metadata.Pairs(shardHeader, sh.name)
	if v := in.Get("authorization"); len(v) > 0 {
		out.Set("authorization", v...)
	}
	cc, err := c.peers.get(leader.GRPC)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dmq: reach the leader of shard %s at %s: %v", sh.name, leader.GRPC, err)
	}
	return dmqv1.NewBrokerClient(cc).ListTopics(metadata.NewOutgoingContext(ctx, out), req)
}

// peerConns keeps one connection per other node's client port, over TLS verified
// against the cluster's CA when the ports use TLS (tc not nil).
type peerConns struct {
	creds credentials.TransportCredentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerConns(tc *tls.Config) *peerConns {
	p := &peerConns{creds: insecure.NewCredentials(), conns: make(map[string]*grpc.ClientConn)}
	if tc != nil {
		p.creds = credentials.NewTLS(tc)
	}
	return p
}

func (p *peerConns) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc := p.conns[addr]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		cc.Close()
	}
	p.conns = nil
}
