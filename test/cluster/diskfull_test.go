package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// fillDisk writes a ballast file in dir until the file system is full, and returns it.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for _, n := range []int{64 << 10, 4 << 10, 512} { // the last blocks too
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// health is a node's /healthz answer.
func health(nd *node) (code int, body string) {
	resp, err := nd.httpClient().Get(nd.url("/healthz"))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// One node's disk fills up, twice, under pipelined publishing: first while it follows,
// then while it leads the shard. Nothing acknowledged may be lost, no "not stored"
// answer may be given for a message that was stored (the ledger's acked set and the
// stored count agree), the full node answers /healthz with 503 and its reason, and once
// space is freed it catches up by itself: every replica ends with the same log. Before
// issue 20's fix, the full node's replica skipped the entries it could not write (its
// copy of the topic stopped for good while `cluster status` showed lag 0), and a full
// leader answered ResourceExhausted for publishes its followers had stored.
func TestOneNodesDiskFillsAndHeals(t *testing.T) {
	const topic = "dev.cluster.diskfull"
	disk := dmqtest.MountTmpfs(t, "40m")
	c := startCluster(t, 3, "--segment-bytes", "1048576")
	victim := c.nodes[0] // s0's preferred leader: the balancer brings the shard back to it
	c.stop(victim)
	moved := filepath.Join(disk, "n1")
	if out, err := exec.Command("cp", "-a", victim.dir, moved).CombinedOutput(); err != nil {
		t.Fatalf("copy n1's data to the tmpfs: %v %s", err, out)
	}
	victim.dir = moved
	c.start(victim)
	c.waitCaughtUp()
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("%s's notable log lines:\n%s", nd.id, dmqtest.Tail(nd.notableLogs(), 25))
			}
		}
	})

	cl := c.dial()
	createTopic(t, cl, topic, "billing")
	lg := newLedger()
	consume(t, cl, topic, "billing", lg)

	var stop atomic.Bool
	var published, refused atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		prod := cl.NewProducer(topic, client.MaxInFlight(100), client.BatchSize(10))
		defer prod.Close()
		body := strings.Repeat("x", 2000)
		for i := 0; !stop.Load() && i < 100_000; i++ {
			id := fmt.Sprintf("d-%d", i)
			wg.Add(1)
			published.Add(1)
			err := prod.PublishAsync(context.Background(), &client.Message{Key: id, Body: []byte(id + body)}, func(r client.PublishResult, err error) {
				defer wg.Done()
				if err != nil {
					refused.Add(1)
					lg.fail(id, err)
					return
				}
				lg.ack(id+body, r.ID)
			})
			if err != nil {
				wg.Done()
				published.Add(-1)
				return
			}
			time.Sleep(time.Millisecond) // about 1,000 messages a second
		}
		wg.Wait()
	}()

	// The node must live through its full disk (Pebble's write-ahead log panicked on
	// ENOSPC until the replica's store dropped it).
	ensureUp := func() {
		select {
		case <-victim.p.Done():
			t.Fatalf("n1 exited on the full disk; its last lines:\n%s", dmqtest.Tail(victim.p.Logs(), 30))
		default:
		}
	}
	for round, role := range []string{"follower", "leader"} {
		if role == "leader" {
			dmqtest.Eventually(t, 60*time.Second, "n1 leading s0", func() bool {
				ensureUp()
				if st, err := status(victim); err == nil && st.Role == "leader" {
					return true
				}
				exec.Command(dmqtest.Binary(t), "cluster", "transfer-leader", "n1", "--http", c.nodes[1].http+","+c.nodes[2].http).Run()
				time.Sleep(time.Second)
				return false
			})
		}
		before, _, _ := lg.counts()
		dmqtest.Eventually(t, 30*time.Second, "publishes acknowledged", func() bool {
			acked, _, _ := lg.counts()
			return acked >= before+500
		})
		ballast := fillDisk(t, disk)
		var reason string
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := health(victim)
			reason = body
			if code == http.StatusServiceUnavailable {
				break
			}
			select {
			case <-victim.p.Done():
				reason = "(n1 exited)"
			default:
			}
			if reason == "(n1 exited)" {
				break
			}
			if time.Now().After(deadline) {
				st, _ := status(victim)
				t.Fatalf("n1's /healthz still answers %d: %s (status %+v, disk: %s)", code, reason, st.Disk, dfOut(disk))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("round %d (n1 %s): disk full; n1's /healthz: %s", round+1, role, strings.TrimSpace(reason))
		// The others go on taking publishes while n1's disk is full.
		during, _, _ := lg.counts()
		dmqtest.Eventually(t, 30*time.Second, "publishes acknowledged while n1's disk is full", func() bool {
			acked, _, _ := lg.counts()
			return acked >= during+500
		})
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
		dmqtest.Eventually(t, 60*time.Second, "n1 healthy again once space is freed", func() bool {
			ensureUp()
			code, _ := health(victim)
			return code == http.StatusOK
		})
	}
	stop.Store(true)
	<-done
	c.waitSettled(60*time.Second, victim)

	total := int(published.Load())
	t.Logf("%d published, %d refused", total, refused.Load())
	// Every acknowledged message delivered, and the topic stores exactly the
	// acknowledged ones: a refused publish ("not stored") that was stored would show.
	dmqtest.Eventually(t, 60*time.Second, "every acknowledged message delivered", func() bool {
		_, _, missing := lg.counts()
		return missing == 0
	})
	acked, _, _ := lg.counts()
	kinds := map[string]int{}
	lg.mu.Lock()
	for _, f := range lg.failed {
		_, msg, _ := strings.Cut(f, ": ")
		kinds[msg[:min(len(msg), 90)]]++
	}
	lg.mu.Unlock()
	t.Logf("refusals: %v", kinds)
	// A refusal after an attempt that may have been stored is answered as "outcome
	// unknown", and such a publish may be stored; one answered as not stored must not.
	lg.checkRefused(t)
	n := storedCount(t, cl, topic)
	if unknown := lg.unknown(); n < uint64(acked) || n > uint64(acked+unknown) {
		t.Fatalf("the topic stores %d messages, %d were acknowledged and %d failed with an unknown outcome (%d refused): refused publishes were stored, or acked ones lost", n, acked, unknown, refused.Load())
	}
	st, err := status(victim)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st.Groups[0])
	if st.ReplicaError != "" || st.Groups[0].Stalled != "" {
		t.Fatalf("n1 after the disk was freed: %s", b)
	}
	c.checkReplicas(n, topic)
}

func dfOut(dir string) string {
	out, _ := exec.Command("df", "-h", dir).CombinedOutput()
	return string(out)
}
