package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/dmqio/dmq/internal/cluster/transport"
)

// A node tells the others about itself over the cluster port (so with its mutual TLS):
// a connection naming the info pseudo-group gets one message, what ServeInfo's function
// returns, and is closed. The server package puts the node's client addresses and its
// replicas' positions there, which no Raft group carries: a follower's progress is not
// visible to its leader in hashicorp/raft, and a node that never led has recorded its
// addresses nowhere.

// infoGroup is the pseudo-group of the info exchange; shard names cannot take it.
const infoGroup = "~info"

// maxInfoBytes bounds one node's info message.
const maxInfoBytes = 1 << 20

// ServeInfo answers every info request with fn's bytes (at most maxInfoBytes). Call once,
// after Start.
func (n *Node) ServeInfo(fn func() []byte) error {
	l, err := n.infoLayer()
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := fn()
				if len(b) > maxInfoBytes {
					b = b[:0]
				}
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
				c.Write(b)
			}()
		}
	}()
	return nil
}

// infoLayer returns the node's layer of the info group, opening it on first use.
func (n *Node) infoLayer() (*transport.Layer, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mux == nil {
		return nil, errors.New("cluster: info before Start")
	}
	if n.mu.info == nil {
		l, err := n.mux.Layer(infoGroup)
		if err != nil {
			return nil, err
		}
		n.mu.info = l
	}
	return n.mu.info, nil
}

// PeerInfo asks the node whose cluster address is addr for its info.
func (n *Node) PeerInfo(ctx context.Context, addr string) ([]byte, error) {
	l, err := n.infoLayer()
	if err != nil {
		return nil, err
	}
	timeout := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	c, err := l.Dial(raft.ServerAddress(addr), timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, fmt.Errorf("cluster: info from %s: %w", addr, err)
	}
	k := binary.BigEndian.Uint32(size[:])
	if k > maxInfoBytes {
		return nil, fmt.Errorf("cluster: info from %s is %d bytes", addr, k)
	}
	b := make([]byte, k)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, fmt.Errorf("cluster: info from %s: %w", addr, err)
	}
	return b, nil
}
