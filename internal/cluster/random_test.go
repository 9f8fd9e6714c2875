package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// envInt reads an integer test knob from the environment.
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// ackLog is what one writer learned: payloads acknowledged by Apply, and payloads whose
// outcome is unknown (leadership lost or timed out after the command was sent).
type ackLog struct {
	mu      sync.Mutex
	acked   []string
	unknown []string
}

// TestRandomPartitions runs a random schedule of faults (isolated nodes, often a leader, one-way and two-way
// cuts, slow links, heals) while one writer per group applies unique entries through
// whichever node leads. After healing, every replica of a group holds the same list, every
// acknowledged entry is in it exactly once, nothing appears twice, each writer's entries are
// in the order it wrote them, and no term ever had two leaders.
// DMQ_CLUSTER_SEED replays a schedule; DMQ_CLUSTER_STEPS sets its length.
func TestRandomPartitions(t *testing.T) {
	seed := envInt(t, "DMQ_CLUSTER_SEED", time.Now().UnixNano())
	steps := int(envInt(t, "DMQ_CLUSTER_STEPS", 12))
	t.Logf("seed %d, %d steps (replay with DMQ_CLUSTER_SEED=%d)", seed, steps, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	groups := []string{"meta", "s0"}
	for _, g := range groups {
		c.waitLeader(g)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	logs := make(map[string]*ackLog)
	errCh := make(chan error, 16)
	for _, group := range groups {
		al := &ackLog{}
		logs[group] = al
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(c, group, al, stop, errCh)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchTerms(c, groups, stop, errCh)
	}()

	ids := c.ids()
	for step := range steps {
		var what string
		switch rng.IntN(7) {
		case 6:
			// Faults that hit a leader are the interesting ones: aim at one often.
			group := groups[rng.IntN(len(groups))]
			n := ids[rng.IntN(len(ids))]
			for _, tn := range c.live() {
				if tn.node.Group(group).IsLeader() {
					n = tn.id
				}
			}
			c.faults.Partition(n)
			what = "isolate " + n + " (leads " + group + ")"
		case 0:
			n := ids[rng.IntN(len(ids))]
			c.faults.Partition(n)
			what = "isolate " + n
		case 1:
			a, b := pair(rng, ids)
			c.faults.Block(a, b)
			what = fmt.Sprintf("block %s->%s", a, b)
		case 2:
			a, b := pair(rng, ids)
			c.faults.BlockBoth(a, b)
			what = fmt.Sprintf("cut %s<->%s", a, b)
		case 3:
			a, b := pair(rng, ids)
			d := time.Duration(5+rng.IntN(60)) * time.Millisecond
			c.faults.Delay(a, b, d)
			what = fmt.Sprintf("delay %s->%s %v", a, b, d)
		default:
			c.faults.Heal()
			what = "heal"
		}
		hold := time.Duration(200+rng.IntN(800)) * time.Millisecond
		t.Logf("step %d: %s for %v", step, what, hold)
		time.Sleep(hold) // the schedule's pace, not an assertion
	}
	c.faults.Heal()
	// Let the writers run on a healed cluster, so that each has acks after the faults.
	for _, group := range groups {
		al := logs[group]
		al.mu.Lock()
		n := len(al.acked)
		al.mu.Unlock()
		waitFor(t, 15*time.Second, "writer on "+group+" to be acked after the heal", func() error {
			al.mu.Lock()
			defer al.mu.Unlock()
			if len(al.acked) < n+5 {
				return fmt.Errorf("%d acks, want %d", len(al.acked), n+5)
			}
			return nil
		})
	}
	close(stop)
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	for _, group := range groups {
		al := logs[group]
		// A final entry through the leader: once every replica has it, each holds the
		// whole committed log.
		final := group + "-final"
		c.apply(group, final)
		var ref []string
		waitFor(t, 15*time.Second, "every replica of "+group+" to apply "+final, func() error {
			ref = nil
			for _, tn := range c.live() {
				got, _ := tn.fsms[group].state()
				if last(got) != final {
					return fmt.Errorf("node %s ends with %q", tn.id, last(got))
				}
				if ref == nil {
					ref = got
				} else if !slices.Equal(got, ref) {
					return fmt.Errorf("node %s differs from the others (%d vs %d entries)", tn.id, len(got), len(ref))
				}
			}
			return nil
		})
		checkWriterInvariant(t, group, ref, al)
		t.Logf("group %s: %d acked, %d unknown outcome, %d entries in the final state", group, len(al.acked), len(al.unknown), len(ref))
	}
}

// checkWriterInvariant checks a group's final list against what its writer was told.
func checkWriterInvariant(t *testing.T, group string, final []string, al *ackLog) {
	t.Helper()
	pos := make(map[string]int, len(final))
	for i, e := range final {
		if _, dup := pos[e]; dup {
			t.Fatalf("group %s: %q applied twice", group, e)
		}
		pos[e] = i
	}
	for _, e := range al.acked {
		if _, ok := pos[e]; !ok {
			t.Fatalf("group %s: acknowledged %q is missing from the final state", group, e)
		}
	}
	written := make(map[string]bool)
	for _, e := range al.acked {
		written[e] = true
	}
	for _, e := range al.unknown {
		written[e] = true
	}
	prev := ""
	for _, e := range final[:len(final)-1] { // all but the final marker
		if !written[e] {
			t.Fatalf("group %s: %q is in the state but was never acked or left unknown (a refused Apply got in)", group, e)
		}
		if e <= prev {
			t.Fatalf("group %s: %q follows %q: out of the writer's order", group, e, prev)
		}
		prev = e
	}
}

// write applies group-w-000001, group-w-000002, ... one at a time through whichever node
// leads, until stop. Each payload is tried once: a retry could apply it twice.
func write(c *testCluster, group string, al *ackLog, stop <-chan struct{}, errCh chan<- error) {
	for seq := 1; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		payload := fmt.Sprintf("%s-w-%06d", group, seq)
		var g *Group
		for _, tn := range c.live() {
			if gg := tn.node.Group(group); gg.IsLeader() {
				g = gg
				break
			}
		}
		if g == nil {
			time.Sleep(20 * time.Millisecond) // no leader yet: pace the loop
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := g.Apply(ctx, []byte(payload))
		cancel()
		al.mu.Lock()
		switch {
		case err == nil:
			al.acked = append(al.acked, payload)
		case errors.Is(err, ErrOutcomeUnknown):
			al.unknown = append(al.unknown, payload)
		case errors.Is(err, ErrNotLeader):
			// Refused before entering the log: must never appear.
		default:
			errCh <- fmt.Errorf("group %s: Apply(%s): unexpected error %v", group, payload, err)
			al.mu.Unlock()
			return
		}
		al.mu.Unlock()
	}
}

// watchTerms samples every replica's view and fails if two nodes lead one term.
func watchTerms(c *testCluster, groups []string, stop <-chan struct{}, errCh chan<- error) {
	leaders := make(map[string]string) // group/term → leader id
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, tn := range c.live() {
			for _, group := range groups {
				st := tn.node.Group(group).Stats()
				if st.State != "Leader" {
					continue
				}
				k := fmt.Sprintf("%s/%d", group, st.Term)
				if prev, ok := leaders[k]; ok && prev != tn.id {
					errCh <- fmt.Errorf("group %s term %d has two leaders: %s and %s", group, st.Term, prev, tn.id)
					return
				}
				leaders[k] = tn.id
			}
		}
	}
}

func pair(rng *rand.Rand, ids []string) (string, string) {
	i := rng.IntN(len(ids))
	j := rng.IntN(len(ids) - 1)
	if j >= i {
		j++
	}
	return ids[i], ids[j]
}
