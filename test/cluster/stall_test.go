package cluster_test

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// publishPaced publishes "<prefix>-<i>" through a pipelined producer, about rate
// messages a second, until stop is closed, then waits for every outcome (into the
// ledger) and returns how many it published.
func publishPaced(t *testing.T, cl *client.Client, topic, prefix string, rate int, lg *ledger, stop <-chan struct{}) int {
	t.Helper()
	prod := cl.NewProducer(topic, client.MaxInFlight(200), client.BatchSize(50))
	defer prod.Close()
	var wg sync.WaitGroup
	const tick = 10 * time.Millisecond
	perTick := max(rate/int(time.Second/tick), 1)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	n := 0
	for {
		select {
		case <-stop:
			wg.Wait()
			return n
		case <-ticker.C:
		}
		for range perTick {
			if err := lg.publish(prod, fmt.Sprintf("%s-%d", prefix, n), &wg); err != nil {
				t.Errorf("PublishAsync: %v", err)
				wg.Wait()
				return n
			}
			n++
		}
	}
}

// TestStalledLeaderDoesNotFreezeProducers stops the leader with SIGSTOP under
// pipelined publishing, as a machine that freezes or a process stuck in the kernel
// would stop: its connections stay open but nothing answers. The others elect a new
// leader within a few seconds; the producer and the consumer must notice that the
// stopped node no longer answers and move to the new leader well before it comes back
// (issue 20: they waited for the SIGCONT, 60 s), and nothing acked is lost or stored
// twice once it does.
func TestStalledLeaderDoesNotFreezeProducers(t *testing.T) {
	const topic = "dev.cluster.stall"
	const stall = 20 * time.Second
	// Within: the election (2-5 s under the race detector on a busy machine), noticing
	// the silence, and a resend's backoff.
	const within = 10 * time.Second
	c := startCluster(t, 3)
	cl := c.dial()
	createTopic(t, cl, topic, "billing")
	lg := newLedger()
	consume(t, cl, topic, "billing", lg)

	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() { published <- publishPaced(t, cl, topic, "s", 500, lg, stop) }()
	dmqtest.Eventually(t, 30*time.Second, "publishing under way", func() bool {
		acked, delivered, _ := lg.counts()
		return acked >= 500 && delivered >= 500
	})

	victim := c.waitLeader(nil)
	stoppedAt := time.Now()
	if err := victim.p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped leader %s with SIGSTOP", victim.id)
	newLeader := c.waitLeader(victim)
	t.Logf("new leader %s after %v", newLeader.id, time.Since(stoppedAt).Round(time.Millisecond))
	time.Sleep(time.Until(stoppedAt.Add(stall)))
	contAt := time.Now()
	pubGap, subGap := lg.ackGap(stoppedAt, contAt), lg.deliverGap(stoppedAt, contAt)
	if err := victim.p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("publishing stalled %v, consuming %v, while %s was stopped for %v",
		pubGap.Round(time.Millisecond), subGap.Round(time.Millisecond), victim.id, stall)

	// The stopped node comes back as a follower; publishing goes on a little.
	time.Sleep(2 * time.Second)
	close(stop)
	total := <-published
	if pubGap > within {
		t.Errorf("publishing stalled %v while the leader was stopped for %v, want under %v", pubGap, stall, within)
	}
	if subGap > within {
		t.Errorf("consuming stalled %v while the leader was stopped for %v, want under %v", subGap, stall, within)
	}
	checkQueue(t, cl, topic, lg, total)
	c.checkReplicas(uint64(total), topic)
}
