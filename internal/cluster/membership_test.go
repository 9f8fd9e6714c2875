package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

func voters(t *testing.T, g *Group) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	servers, err := g.Configuration(ctx)
	if err != nil {
		t.Fatalf("Configuration of %s: %v", g.Name(), err)
	}
	var ids []string
	for _, s := range servers {
		if s.Voter {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestAddAndRemoveVoter adds a fourth node as a voter of every group, checks it receives the
// state and counts in the configuration, then removes one of the original nodes.
func TestAddAndRemoveVoter(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	want := map[string][]string{}
	for _, group := range testGroups {
		want[group] = entries(group, 0, 10)
		for _, e := range want[group] {
			c.apply(group, e)
		}
	}
	n4 := c.addNode("n4")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, group := range testGroups {
		leader := c.waitLeader(group, "n1", "n2", "n3")
		if err := leader.node.Group(group).AddVoter(ctx, n4.id, n4.addr); err != nil {
			t.Fatalf("%s: AddVoter(n4) on %s: %v", group, leader.id, err)
		}
		if got := voters(t, leader.node.Group(group)); !slices.Equal(got, []string{"n1", "n2", "n3", "n4"}) {
			t.Fatalf("%s: voters after AddVoter = %v", group, got)
		}
		c.waitConverged(group, want[group])
	}

	// Remove n2 (or, if it leads, the leader removes itself and the others elect).
	for _, group := range testGroups {
		leader := c.waitLeader(group)
		if err := leader.node.Group(group).RemoveServer(ctx, "n2"); err != nil {
			t.Fatalf("%s: RemoveServer(n2) on %s: %v", group, leader.id, err)
		}
		leader = c.waitLeader(group, "n1", "n3", "n4")
		if got := voters(t, leader.node.Group(group)); !slices.Equal(got, []string{"n1", "n3", "n4"}) {
			t.Fatalf("%s: voters after RemoveServer(n2) = %v", group, got)
		}
		more := fmt.Sprintf("%s-without-n2", group)
		c.apply(group, more)
		want[group] = append(want[group], more)
		c.waitConverged(group, want[group], "n1", "n3", "n4")
		// The removed replica gets nothing more. (It is not told it was removed when the
		// leader stops replicating to it first; pre-vote keeps it from disturbing the rest.)
		if st := c.node("n2").node.Group(group).Stats(); st.State == "Leader" {
			t.Fatalf("%s: removed n2 is %s", group, st.State)
		}
		if got, _ := c.node("n2").fsms[group].state(); slices.Contains(got, more) {
			t.Fatalf("%s: removed n2 applied %q", group, more)
		}
	}
}

// TestTransferLeadership moves leadership to a named voter, then to any other.
func TestTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	const group = "meta"
	leader := c.waitLeader(group)
	target := "n1"
	if leader.id == target {
		target = "n2"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes := c.node(target).node.Group(group).LeaderChanges()
	if err := leader.node.Group(group).TransferLeadership(ctx, target); err != nil {
		t.Fatalf("TransferLeadership(%s) on %s: %v", target, leader.id, err)
	}
	if got := c.waitLeader(group); got.id != target {
		t.Fatalf("after TransferLeadership(%s) the leader is %s", target, got.id)
	}
	waitFor(t, 5*time.Second, "LeaderChanges on "+target+" to report it", func() error {
		select {
		case l := <-changes:
			if l.ID == target {
				return nil
			}
			return fmt.Errorf("got %+v", l)
		default:
			return errors.New("nothing yet")
		}
	})
	c.apply(group, "after-transfer")

	if err := c.node(target).node.Group(group).TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("TransferLeadership(any) on %s: %v", target, err)
	}
	if got := c.waitLeader(group); got.id == target {
		t.Fatalf("after TransferLeadership(any) %s still leads", target)
	}
	if err := c.waitLeader(group).node.Group(group).TransferLeadership(ctx, "n9"); err == nil {
		t.Fatalf("TransferLeadership to a non-member succeeded")
	}
	var follower *testNode
	for _, tn := range c.live() {
		if !tn.node.Group(group).IsLeader() {
			follower = tn
		}
	}
	if err := follower.node.Group(group).TransferLeadership(ctx, ""); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("TransferLeadership on follower %s = %v, want ErrNotLeader", follower.id, err)
	}
}

// TestLoneVoterRecordsItsNewAddress restarts a one-voter node on another cluster address,
// as a node started alone on loopback is restarted to grow into a cluster: once it leads,
// its groups' configurations hold the new address, and a node that joins then reaches it
// there after leadership moved to the newcomer.
func TestLoneVoterRecordsItsNewAddress(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	for _, group := range testGroups {
		c.waitLeader(group, "n1")
		c.apply(group, group+"-before")
	}
	c.stop("n1")
	n1 := c.node("n1")
	old := n1.addr
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n1.addr = ln.Addr().String()
	if err := c.startNode(n1, ln, nil, false); err != nil {
		t.Fatalf("restart n1 on %s: %v", n1.addr, err)
	}
	for _, group := range testGroups {
		g := c.waitLeader(group, "n1").node.Group(group)
		waitFor(t, 10*time.Second, group+": n1's new address in the configuration", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			servers, err := g.Configuration(ctx)
			if err != nil {
				return err
			}
			if len(servers) != 1 || servers[0].Addr != n1.addr {
				return fmt.Errorf("configuration %+v, want n1 at %s (was %s)", servers, n1.addr, old)
			}
			return nil
		})
	}
	n2 := c.addNode("n2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, group := range testGroups {
		g := n1.node.Group(group)
		if err := g.AddVoter(ctx, n2.id, n2.addr); err != nil {
			t.Fatalf("%s: AddVoter(n2): %v", group, err)
		}
		c.waitConverged(group, []string{group + "-before"})
		if err := g.TransferLeadership(ctx, "n2"); err != nil {
			t.Fatalf("%s: transfer to n2: %v", group, err)
		}
		c.waitLeader(group, "n2")
		// n2 leads and replicates to n1 at the address the configuration holds.
		c.apply(group, group+"-after")
		c.waitConverged(group, []string{group + "-before", group + "-after"})
	}
}

// TestASecondTransferInATermWaits: a transfer that did not happen (its target is down)
// leaves the leader in its term; a second one within transferSpacing is refused at once
// (hashicorp/raft could wedge on it, see transferSpacing), and the leader still applies.
func TestASecondTransferInATermWaits(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	const group = "meta"
	leader := c.waitLeader(group)
	var down string
	for _, tn := range c.live() {
		if tn.id != leader.id {
			down = tn.id
			break
		}
	}
	c.stop(down)
	g := leader.node.Group(group)
	term := g.Term()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.TransferLeadership(ctx, down); err == nil {
		t.Fatalf("TransferLeadership to stopped %s succeeded", down)
	}
	if !g.IsLeader() || g.Term() != term {
		t.Fatalf("a transfer to a stopped node moved leadership (term %d -> %d)", term, g.Term())
	}
	if err := g.TransferLeadership(ctx, ""); !errors.Is(err, ErrTransferTooSoon) {
		t.Fatalf("second TransferLeadership in term %d = %v, want ErrTransferTooSoon", term, err)
	}
	waitFor(t, 5*time.Second, "the leader to apply again", func() error {
		_, err := g.Apply(ctx, []byte("after-refused-transfer"))
		return err
	})
}
