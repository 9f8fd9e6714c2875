package client

import (
	"github.com/dmqio/dmq/internal/shard"
	"google.golang.org/grpc/connectivity"
)

// What the tests of package client_test (which use real servers through
// internal/dmqtest, itself an importer of client) need to see inside.

// MaxRedirects is how many redirects a call follows in a row.
const MaxRedirects = maxRedirects

// CurrentAddr is the address c sends calls about no topic to (s0's route).
func CurrentAddr(c *Client) string { return ShardAddr(c, shard.Meta) }

// ShardAddr is the address c sends calls about a topic of shard sh to.
func ShardAddr(c *Client, sh string) string {
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	return c.router.routeLocked(sh).addr
}

// KnownAddrs is the addresses c knows: its seeds, then leaders it learned.
func KnownAddrs(c *Client) []string {
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	return append([]string(nil), c.router.mu.addrs...)
}

// ConnStates returns the state of each connection c made, by address.
func ConnStates(c *Client) map[string]connectivity.State {
	c.router.mu.Lock()
	defer c.router.mu.Unlock()
	out := map[string]connectivity.State{}
	for addr, cc := range c.router.mu.conns {
		out[addr] = cc.GetState()
	}
	return out
}
