package cluster_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// A leader killed under pipelined load holds entries nobody else stored; when it comes
// back, the new leader's log differs and it cuts its own tail ("clearing log suffix").
// Its next start, graceful or not, must succeed: with raft-wal v0.4.0 the cut segment
// was recorded as sealed without an index, and every later start panicked in
// raft.NewRaft ("sealed segment has no index block") — the node was lost for good.
// Each round kills the leader, restarts it, waits until it caught up, and starts it
// once more; at the end every acknowledged message is delivered, stored once, and
// every replica holds the same log.
func TestKilledLeaderStartsAgainAfterItsLogWasCut(t *testing.T) {
	const topic, rounds = "dev.cluster.restarts", 3
	c := startCluster(t, 3)
	cl := c.dial()
	createTopic(t, cl, topic, "billing")
	lg := newLedger()
	consume(t, cl, topic, "billing", lg)

	// Pipelined load until the rounds are done.
	var stop atomic.Bool
	var published atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		prod := cl.NewProducer(topic, client.MaxInFlight(400), client.BatchSize(20))
		defer prod.Close()
		// Paced, so that the count bound is not reached before the rounds are done (it
		// was, at full speed: the publisher ended, and a round waited for acks in vain).
		const rate, most = 5000, 2_000_000
		start := time.Now()
		for i := 0; !stop.Load() && i < most; i++ {
			if i%100 == 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
			}
			if err := lg.publish(prod, fmt.Sprintf("r-%d", i), &wg); err != nil {
				// Not sent (the producer gave up on an outage and refuses for a moment):
				// try the next one a little later.
				time.Sleep(50 * time.Millisecond)
				continue
			}
			published.Add(1)
		}
		wg.Wait()
	}()

	cuts := 0
	for round := 1; round <= rounds; round++ {
		before, _, _ := lg.counts()
		deadline := time.Now().Add(60 * time.Second)
		for acked, _, _ := lg.counts(); acked < before+2000; acked, _, _ = lg.counts() {
			select {
			case <-done:
				t.Fatalf("round %d: the publisher ended after %d publishes", round, published.Load())
			default:
			}
			if time.Now().After(deadline) {
				for _, nd := range c.nodes {
					st, err := status(nd)
					t.Logf("%s: status %+v %v\nnotable logs:\n%s", nd.id, st, err, dmqtest.Tail(nd.notableLogs(), 30))
				}
				t.Fatalf("round %d: %d publishes acknowledged in 60s", round, acked-before)
			}
			time.Sleep(50 * time.Millisecond)
		}
		victim := c.waitLeader(nil)
		victim.p.Kill()
		c.waitLeader(victim)
		c.start(victim) // a start over the tail the kill left
		c.waitCaughtUp()
		if strings.Contains(victim.p.Logs(), "clearing log suffix") {
			cuts++
		}
		if round%2 == 1 {
			c.stop(victim)
		} else {
			victim.p.Kill()
		}
		c.start(victim) // the start that failed for good before
		c.waitCaughtUp()
		t.Logf("round %d: killed and restarted leader %s twice (%d cut logs so far)", round, victim.id, cuts)
	}
	stop.Store(true)
	<-done
	t.Logf("%d cut logs in %d rounds; %d published", cuts, rounds, published.Load())

	// Every acknowledged message delivered; the topic stores each acknowledged one once,
	// and at most the publishes that failed besides (their outcome was unknown).
	dmqtest.Eventually(t, 60*time.Second, "every acknowledged message delivered", func() bool {
		_, _, missing := lg.counts()
		return missing == 0
	})
	acked, _, _ := lg.counts()
	lg.mu.Lock()
	failed := len(lg.failed)
	lg.mu.Unlock()
	n := storedCount(t, cl, topic)
	t.Logf("%d acked, %d failed, %d stored", acked, failed, n)
	if n < uint64(acked) || n > uint64(acked+failed) {
		t.Fatalf("the topic stores %d messages for %d acknowledged and %d failed publishes", n, acked, failed)
	}
	c.checkReplicas(n, topic)
}
