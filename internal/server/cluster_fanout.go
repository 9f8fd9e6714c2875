package server

import (
	"cmp"
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

// Calls about every shard (the list of topics, the audit log) are answered by the node
// that receives them: it asks each shard's broker, its own or the leader's on another
// node, and merges the answers.

// fanout is a call answered from every shard: how to make an empty answer and how to
// merge the shards' answers.
type fanout struct {
	reply func() any
	merge func(req any, parts []any) any
}

var fanouts = map[string]fanout{
	dmqv1.Broker_ListTopics_FullMethodName: {
		reply: func() any { return new(dmqv1.ListTopicsResponse) },
		merge: func(_ any, parts []any) any {
			var topics []*dmqv1.Topic
			for _, p := range parts {
				topics = append(topics, p.(*dmqv1.ListTopicsResponse).Topics...)
			}
			slices.SortFunc(topics, func(a, b *dmqv1.Topic) int { return strings.Compare(a.Name, b.Name) })
			return &dmqv1.ListTopicsResponse{Topics: topics}
		},
	},
	dmqv1.Broker_ListAudit_FullMethodName: {
		reply: func() any { return new(dmqv1.ListAuditResponse) },
		merge: func(req any, parts []any) any {
			var es []*dmqv1.AuditEntry
			for _, p := range parts {
				es = append(es, p.(*dmqv1.ListAuditResponse).Entries...)
			}
			// Newest first, as each shard answers; the request's limit (or its default).
			slices.SortStableFunc(es, func(a, b *dmqv1.AuditEntry) int { return cmp.Compare(b.TimeMs, a.TimeMs) })
			limit := int(req.(*dmqv1.ListAuditRequest).Limit)
			if limit == 0 {
				limit = 100
			}
			return &dmqv1.ListAuditResponse{Entries: es[:min(limit, len(es))]}
		},
	},
}

// fanoutInterceptor answers the calls of fanouts from every shard on a cluster of
// several. The parts it sends carry the shard they are for (shardHeader), which Route
// follows.
func (c *clusterNode) fanoutInterceptor() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		f, ok := fanouts[info.FullMethod]
		if !ok || c.nShards == 1 || hasShardHeader(ctx) {
			return handler(ctx, req)
		}
		in, _ := metadata.FromIncomingContext(ctx)
		parts := make([]any, 0, c.nShards)
		for _, sh := range c.shardList() {
			var resp any
			var err error
			if sh.leading() != nil {
				md := in.Copy()
				md.Set(shardHeader, sh.name)
				resp, err = handler(metadata.NewIncomingContext(ctx, md), req)
			} else {
				resp = f.reply()
				err = c.askLeader(ctx, in, sh, info.FullMethod, req, resp)
			}
			if err != nil {
				return nil, err // a partial answer would read as things that do not exist
			}
			parts = append(parts, resp)
		}
		return f.merge(req, parts), nil
	})
}

func hasShardHeader(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, shardHeader)) > 0
}

// askLeader sends a shard's part of a call to the shard's leader, with the caller's
// credentials.
func (c *clusterNode) askLeader(ctx context.Context, in metadata.MD, sh *shardReplica, method string, req, reply any) error {
	leader := sh.leaderAddrs()
	if leader.GRPC == "" {
		return status.Errorf(codes.Unavailable, "dmq: shard %s has no leader yet (an election is in progress)", sh.name)
	}
	out := metadata.Pairs(shardHeader, sh.name)
	if v := in.Get("authorization"); len(v) > 0 {
		out.Set("authorization", v...)
	}
	cc, err := c.peers.get(leader.GRPC)
	if err != nil {
		return status.Errorf(codes.Unavailable, "dmq: reach the leader of shard %s at %s: %v", sh.name, leader.GRPC, err)
	}
	return cc.Invoke(metadata.NewOutgoingContext(ctx, out), method, req, reply)
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
