package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A node answers info requests with what its function says now; a node that serves no
// info refuses them; a cut link carries none.
func TestNodesTellEachOtherTheirInfo(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	n1, n2, n3 := c.node("n1"), c.node("n2"), c.node("n3")
	var said atomic.Value
	said.Store("first")
	if err := n1.node.ServeInfo(func() []byte { return []byte(said.Load().(string)) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if b, err := n2.node.PeerInfo(ctx, n1.addr); err != nil || string(b) != "first" {
		t.Fatalf("n2 asked n1: %q, %v", b, err)
	}
	said.Store("second")
	if b, err := n3.node.PeerInfo(ctx, n1.addr); err != nil || string(b) != "second" {
		t.Fatalf("n3 asked n1: %q, %v", b, err)
	}
	if b, err := n1.node.PeerInfo(ctx, n2.addr); err == nil {
		t.Fatalf("n2 serves no info but answered %q", b)
	}
	c.faults.Partition("n1")
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if b, err := n2.node.PeerInfo(short, n1.addr); err == nil {
		t.Fatalf("n1 is cut off but answered %q", b)
	}
}
