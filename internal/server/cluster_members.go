package server

import (
	"context"
	"slices"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/meta"
)

// Clients learn the cluster's members from any node they reach, so that a client started
// with the addresses of nodes since replaced still finds the cluster: a unary call whose
// metadata carries membersKey is answered, whatever its outcome, with a trailer listing
// the client addresses of the members (shard s0's configuration, as this node has it),
// the index of the log entry that set that configuration (of two lists the client keeps
// the newer) and this node's id (the client knows it under the address it dialled).
// A node that is not a member itself (it was removed), or that does not know every
// member's address, lists nothing. See client/leader.go.
const (
	membersKey      = "dmq-members"       // request: "1"; trailer: "id=host:port", one per member
	membersIndexKey = "dmq-members-index" // trailer: the configuration's log index
	membersSelfKey  = "dmq-members-self"  // trailer: the answering node's id
)

// membersInterceptor answers the calls that ask for the members (see above), before the
// call is routed: a node that does not lead the call's shard answers too.
func (c *clusterNode) membersInterceptor() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if len(metadata.ValueFromIncomingContext(ctx, membersKey)) > 0 {
			if md := c.membersTrailer(); md != nil {
				grpc.SetTrailer(ctx, md)
			}
		}
		return handler(ctx, req)
	})
}

// membersTrailer is the members' client addresses as this node knows them (nil if this
// node is not a member).
func (c *clusterNode) membersTrailer() metadata.MD {
	st := c.shard(0).group.Stats()
	self := c.s.cfg.NodeID
	if !slices.ContainsFunc(st.Servers, func(s cluster.Server) bool { return s.ID == self }) {
		return nil
	}
	md := metadata.MD{}
	for _, srv := range st.Servers {
		a := c.clientAddr(srv.ID)
		if a == "" {
			// A member whose address this node does not know (cut off from it, it
			// forgot what the member said): a list without it would make the client
			// forget a node that may be the one serving.
			return nil
		}
		md.Append(membersKey, srv.ID+"="+a)
	}
	md.Set(membersIndexKey, strconv.FormatUint(st.ConfigIndex, 10))
	md.Set(membersSelfKey, self)
	return md
}

// clientAddr is node id's gRPC address: what it said itself, else what it recorded in s0
// when it led it ("" if neither is known).
func (c *clusterNode) clientAddr(id string) string {
	if id == c.s.cfg.NodeID {
		return c.s.GRPCAddr()
	}
	if p, ok := c.peerAddrs(id); ok {
		return p.GRPC
	}
	var addr string
	c.shard(0).store.ReadMeta(func(ms *meta.Store) error {
		if n, err := ms.GetNode(id); err == nil {
			addr = n.GRPC
		}
		return nil
	})
	return addr
}
