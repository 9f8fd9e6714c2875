package client

import (
	"testing"
	"time"

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

// KnownAddrs is the addresses c knows: its seeds, then leaders it learned, or the
// members a node listed.
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
	for addr, cn := range c.router.mu.conns {
		out[addr] = cn.cc.GetState()
	}
	return out
}

// SetAnswerTimeout sets how long a Producer's stream may leave its batches unanswered,
// until the test ends.
func SetAnswerTimeout(t testing.TB, d time.Duration) {
	old := answerTimeout
	answerTimeout = d
	t.Cleanup(func() { answerTimeout = old })
}

// ProbeTimeout is how long a node has to answer the watchdog's probe.
const ProbeTimeout = probeTimeout
