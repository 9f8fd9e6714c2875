package transport

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Faults is a link table for fault injection in tests: which directed links between nodes
// are blocked and which are delayed. One *Faults is shared by the in-process nodes of a test
// cluster (Config.Faults); all methods are safe for concurrent use. The zero value is not
// usable: call NewFaults.
//
// A blocked link A→B refuses new connections between A and B (a TCP connection needs both
// directions) and breaks existing ones at A's next write to B or B's next read from A, as a
// dropped route would: the reader or writer gets an error and the connection is closed.
// A delay on A→B sleeps before each write from A to B.
type Faults struct {
	mu struct {
		sync.RWMutex
		nodes   map[string]bool
		blocked map[link]bool
		delay   map[link]time.Duration
	}
}

type link struct{ from, to string }

// NewFaults returns a table with every link open.
func NewFaults() *Faults {
	f := &Faults{}
	f.mu.nodes = make(map[string]bool)
	f.mu.blocked = make(map[link]bool)
	f.mu.delay = make(map[link]time.Duration)
	return f
}

// register records a node id so that Partition knows the rest of the cluster.
func (f *Faults) register(nodeID string) {
	f.mu.Lock()
	f.mu.nodes[nodeID] = true
	f.mu.Unlock()
}

// Block drops traffic from node from to node to.
func (f *Faults) Block(from, to string) {
	f.mu.Lock()
	f.mu.blocked[link{from, to}] = true
	f.mu.Unlock()
}

// BlockBoth drops traffic between a and b in both directions.
func (f *Faults) BlockBoth(a, b string) {
	f.mu.Lock()
	f.mu.blocked[link{a, b}] = true
	f.mu.blocked[link{b, a}] = true
	f.mu.Unlock()
}

// Partition cuts the given nodes off from every other node that has used this table (both
// directions); links inside the set are left as they are.
func (f *Faults) Partition(side ...string) {
	in := make(map[string]bool, len(side))
	for _, n := range side {
		in[n] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range side {
		for b := range f.mu.nodes {
			if !in[b] {
				f.mu.blocked[link{a, b}] = true
				f.mu.blocked[link{b, a}] = true
			}
		}
	}
}

// Unblock reopens the link from → to.
func (f *Faults) Unblock(from, to string) {
	f.mu.Lock()
	delete(f.mu.blocked, link{from, to})
	f.mu.Unlock()
}

// Delay makes every write from node from to node to wait d first; zero removes the delay.
func (f *Faults) Delay(from, to string, d time.Duration) {
	f.mu.Lock()
	if d <= 0 {
		delete(f.mu.delay, link{from, to})
	} else {
		f.mu.delay[link{from, to}] = d
	}
	f.mu.Unlock()
}

// Heal opens every link and removes every delay.
func (f *Faults) Heal() {
	f.mu.Lock()
	clear(f.mu.blocked)
	clear(f.mu.delay)
	f.mu.Unlock()
}

// Blocked reports whether the link from → to is blocked.
func (f *Faults) Blocked(from, to string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.blocked[link{from, to}]
}

func (f *Faults) linkState(from, to string) (blocked bool, delay time.Duration) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.blocked[link{from, to}], f.mu.delay[link{from, to}]
}

// connAllowed reports whether a connection between a and b may exist: both directions open.
func (f *Faults) connAllowed(a, b string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return !f.mu.blocked[link{a, b}] && !f.mu.blocked[link{b, a}]
}

// faultConn applies the link table to one established connection between local and remote.
type faultConn struct {
	net.Conn
	f             *Faults
	local, remote string
}

func (c *faultConn) Write(p []byte) (int, error) {
	blocked, delay := c.f.linkState(c.local, c.remote)
	if blocked {
		c.Conn.Close()
		return 0, fmt.Errorf("transport: link %s->%s blocked by fault injection", c.local, c.remote)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if blocked, _ := c.f.linkState(c.remote, c.local); blocked {
		c.Conn.Close()
		return 0, fmt.Errorf("transport: link %s->%s blocked by fault injection", c.remote, c.local)
	}
	return n, err
}
