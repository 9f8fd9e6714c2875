// Package fault_test injects the faults a broker meets in production
// (power loss, torn and corrupt files, I/O errors, crashes) and checks
// that nothing acknowledged is lost and nothing corrupt is served.
package fault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/replica"
	"github.com/dmqio/dmq/internal/server"
)

// ledger is what clients were told before the power cut: messages acked to
// producers and deliveries their consumer acked.
type ledger struct {
	mu        sync.Mutex
	attempted map[string]bool // bodies sent
	acked     map[string]bool // bodies acked to their producer
	handled   map[string]bool // message ids the consumer acked
	cut       bool            // the power is cut: what the broker says now never reached anyone
}

func newLedger() *ledger {
	return &ledger{attempted: map[string]bool{}, acked: map[string]bool{}, handled: map[string]bool{}}
}

const (
	topicName = "test.fault.orders"
	groupName = "billing"
)

// machines are brokers, each on its own disk, whose power is cut at one instant: a
// standalone broker, a one-voter node (the default) or a cluster of nodes. Each start
// runs on what the last cut left on the disks. The cluster ports stay for the life of
// the disks, as a node's peers expect; the client ports are new at each start, so that
// another test process cannot take one between two starts.
type machines struct {
	t          *testing.T
	standalone bool
	disks      []*faultfs.FS
	cfgs       []config.Config
	up         []*server.Server
	down       int // a machine start leaves off (-1: none)
	events     *events
}

// events counts the log lines of the recoveries the test means to meet.
type events struct {
	mu     sync.Mutex
	counts map[string]int
	// recent holds the last warnings and errors, printed when a check fails.
	recent []string
}

func newEvents() *events { return &events{counts: map[string]int{}} }

// watched are the log lines events counts, by what they mean.
var watched = map[string]string{
	"replica: snapshot released":             "snapshots taken",
	"replica: installed a snapshot":          "snapshots installed",
	"finishing the install of a snapshot":    "installs finished at start",
	"installing the snapshot again":          "installs redone at start",
	"recovered topic log":                    "topic logs repaired",
	"cluster: the replica's state is behind": "states behind a snapshot",
}

// handler is the slog.Handler of one machine's logs.
func (e *events) handler(machine string) slog.Handler { return evHandler{e, machine} }

type evHandler struct {
	e      *events
	prefix string // the machine, then attributes given by With
}

func (h evHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h evHandler) WithGroup(string) slog.Handler            { return h }
func (h evHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		h.prefix += " " + a.String()
	}
	return h
}

func (h evHandler) Handle(_ context.Context, r slog.Record) error {
	e := h.e
	if r.Level >= slog.LevelWarn {
		line := r.Time.Format("15:04:05.000") + " [" + h.prefix + "] " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		e.mu.Lock()
		if e.recent = append(e.recent, line); len(e.recent) > 300 {
			e.recent = e.recent[1:]
		}
		e.mu.Unlock()
	}
	for text, what := range watched {
		if strings.Contains(r.Message, text) {
			e.mu.Lock()
			e.counts[what]++
			e.mu.Unlock()
		}
	}
	return nil
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for _, what := range watched {
		parts = append(parts, fmt.Sprintf("%s %d", what, e.counts[what]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// note adds a line of the test's own to the recent ones.
func (e *events) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recent = append(e.recent, time.Now().Format("15:04:05.000")+" TEST "+fmt.Sprintf(format, args...))
}

// warnings are the last warnings and errors logged.
func (e *events) warnings() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.recent, "\n")
}

// newMachines makes n machines with empty disks.
func newMachines(t *testing.T, n int, standalone bool, ev *events) *machines {
	m := &machines{events: ev, t: t, standalone: standalone, disks: make([]*faultfs.FS, n), up: make([]*server.Server, n), down: -1}
	var peers []string
	for i := range n {
		m.disks[i] = faultfs.New()
		cfg := dmqtest.Config("/data") // client ports: new ones at each start
		cfg.SegmentBytes = 1 << 20     // roll often
		cfg.NoTrace = true             // trace records are not what this test checks
		cfg.Standalone = standalone
		// Snapshots and log compaction within each round: a cut meets them too, and
		// a node left off for a round may need a snapshot to catch up.
		cfg.SnapshotInterval, cfg.SnapshotEntries, cfg.TrailingEntries, cfg.SnapshotBytes = 20*time.Millisecond, 16, 8, 256<<10
		if !standalone {
			// The cluster port stays for the life of the disks, as the peers expect.
			cfg.NodeID, cfg.ClusterListen = fmt.Sprintf("n%d", i+1), dmqtest.FreePort(t)
			peers = append(peers, cfg.NodeID+"="+cfg.ClusterListen)
		}
		m.cfgs = append(m.cfgs, cfg)
	}
	if n > 1 {
		for i := range m.cfgs {
			m.cfgs[i].Peers = strings.Join(peers, ",")
		}
	}
	return m
}

// start starts every machine on its disk and waits until one serves as leader. It
// fails the test if a machine cannot recover from what the last power cut left.
func (m *machines) start() *server.Server {
	m.t.Helper()
	errs := make([]error, len(m.disks))
	var wg sync.WaitGroup
	for i := range m.disks {
		if i == m.down {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := m.cfgs[i]
			cfg.FS = m.disks[i]
			s, err := server.New(cfg, slog.New(m.events.handler(fmt.Sprintf("m%d", i+1))))
			if err == nil {
				err = s.Start()
			}
			m.up[i], errs[i] = s, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			m.t.Fatalf("machine %d does not start after a power cut: %v", i+1, err)
		}
	}
	var leader *server.Server
	dmqtest.Eventually(m.t, 30*time.Second, "a broker serving as leader", func() bool {
		leader = m.leader()
		return leader != nil
	})
	return leader
}

// leader is the machine whose broker serves, or nil.
func (m *machines) leader() *server.Server {
	for _, s := range m.up {
		if s != nil && s.Broker() != nil {
			return s
		}
	}
	return nil
}

// name names a running machine.
func (m *machines) name(s *server.Server) string {
	for i, u := range m.up {
		if u == s {
			return fmt.Sprintf("m%d", i+1)
		}
	}
	return "?"
}

// addrs are the running machines' client addresses.
func (m *machines) addrs() []string {
	var out []string
	for _, s := range m.up {
		if s != nil {
			out = append(out, s.GRPCAddr())
		}
	}
	return out
}

// cutPower cuts the power of every disk at this instant. The brokers are not told
// (Pebble panics on a failed write or sync): they go on, on disks that keep nothing
// more, and the ledger stops taking acks, since a dead machine sends none.
func (m *machines) cutPower(l *ledger) {
	l.mu.Lock()
	faultfs.CutPowerTogether(m.disks...)
	l.cut = true
	l.mu.Unlock()
}

// reboot stops the brokers and keeps what a reboot finds on the disks.
func (m *machines) reboot(rng *rand.Rand) {
	m.stop()
	for i, d := range m.disks {
		m.disks[i] = d.Crash(rng)
	}
}

// stop shuts every running broker down.
func (m *machines) stop() {
	var wg sync.WaitGroup
	for i, s := range m.up {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		}()
		m.up[i] = nil
	}
	wg.Wait()
}

// caughtUp waits until every node applied what its shard's leader committed.
func (m *machines) caughtUp() {
	m.t.Helper()
	if m.standalone || len(m.up) == 1 {
		return
	}
	dmqtest.Eventually(m.t, 30*time.Second, "every node applied what the leader committed", func() bool {
		var commit uint64
		applied := map[int]uint64{}
		for i, s := range m.up {
			if s == nil {
				continue
			}
			st, err := nodeStatus(s)
			if err != nil || len(st.Groups) == 0 {
				return false
			}
			g := st.Groups[0]
			if g.Role == "leader" {
				commit = g.CommitIndex
			}
			applied[i] = g.AppliedIndex
		}
		for _, a := range applied {
			if commit == 0 || a < commit {
				return false
			}
		}
		return true
	})
}

func nodeStatus(s *server.Server) (server.Status, error) {
	var st server.Status
	hc := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + s.HTTPAddr() + "/api/v1/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// checkReplicasEqual stops the nodes and compares each one's copy of the topic's log
// with the first's: the same records at the same offsets.
func (m *machines) checkReplicasEqual() error {
	m.stop()
	var first [][]byte
	for i, d := range m.disks {
		s, err := replica.Open(replica.Options{DataDir: "/data", FS: d})
		if err != nil {
			return fmt.Errorf("n%d: %v", i+1, err)
		}
		recs, err := func() ([][]byte, error) {
			defer s.Close()
			l, err := s.OpenLog(topicName, replica.Options{}.Log)
			if err != nil {
				return nil, err
			}
			var recs [][]byte
			for off := l.First(); off < l.Next(); off++ {
				p, err := l.Read(off)
				if err != nil {
					return nil, fmt.Errorf("read %d: %v", off, err)
				}
				recs = append(recs, p)
			}
			return recs, nil
		}()
		if err != nil {
			return fmt.Errorf("n%d: %v", i+1, err)
		}
		if i == 0 {
			first = recs
			continue
		}
		if len(recs) != len(first) {
			return fmt.Errorf("n1 holds %d records of %s, n%d %d", len(first), topicName, i+1, len(recs))
		}
		for k := range recs {
			if !bytes.Equal(recs[k], first[k]) {
				return fmt.Errorf("n1 and n%d differ at record %d of %d: %.60q and %.60q", i+1, k, len(recs), first[k], recs[k])
			}
		}
	}
	return nil
}

// Power is cut at random points while producers publish and a consumer acks; after
// each cut the brokers restart on what the disks kept. Every message acked to a
// producer is there and reads back intact, nothing else is served, and the group's
// position never passed a message its consumer had not acked. The rounds of an epoch
// run on the same disks, so recoveries stack; a new epoch starts from empty disks.
//
// DMQ_FAULT_SEED replays a run; DMQ_FAULT_ROUNDS changes the number of power cuts.
//
// A plain run cuts nodes (the default storage); with DMQTEST_STANDALONE, as .ci/run's
// second pass of the server suites, a standalone broker.
func TestPowerLossKeepsEveryAckedMessage(t *testing.T) {
	if !dmqtest.OneVoter() {
		t.Run("standalone", func(t *testing.T) { powerCuts(t, 1, true, 200, 25) })
		return
	}
	t.Run("node", func(t *testing.T) { powerCuts(t, 1, false, 100, 20) })
	// Every node of the cluster loses its power at the same instant (the coordinated
	// power loss under which Jepsen found NATS 2.12.1 losing acked writes); at the end
	// of each epoch the nodes' copies of the log are compared.
	t.Run("three nodes", func(t *testing.T) { powerCuts(t, 3, false, 100, 10) })
}

func powerCuts(t *testing.T, n int, standalone bool, rounds, epoch int) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DMQ_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DMQ_FAULT_SEED=%q: %v", s, err)
		}
	}
	if s := os.Getenv("DMQ_FAULT_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d; replay with DMQ_FAULT_SEED=%d go test -run '%s' ./test/fault/", seed, seed, t.Name())
	rng := rand.New(rand.NewPCG(seed, 0x646d71))

	var m *machines
	var l *ledger
	ev := newEvents()
	var acked, handled, segments int
	defer func() {
		if m != nil {
			m.stop()
		}
		t.Logf("%d power cuts: %d messages acked to producers, %d deliveries acked, up to %d segments per epoch; %s", rounds, acked, handled, segments, ev)
	}()
	// endEpoch checks the last cut of an epoch, and that the replicas are equal.
	endEpoch := func(round int) {
		m.down = -1
		s := m.start()
		if err := verify(s.Broker(), l); err != nil {
			t.Fatalf("seed %d, after round %d: %v\nlast warnings:\n%s", seed, round, err, ev.warnings())
		}
		if ti, err := s.Broker().GetTopic(topicName); err == nil {
			segments = max(segments, ti.Segments)
		}
		if n > 1 {
			m.caughtUp()
			if err := m.checkReplicasEqual(); err != nil {
				t.Fatalf("seed %d, after round %d: replicas differ: %v\nlast warnings:\n%s", seed, round, err, ev.warnings())
			}
		}
		m.stop()
		acked, handled = acked+len(l.acked), handled+len(l.handled)
	}
	for round := 0; round < rounds; round++ {
		if round%epoch == 0 {
			if m != nil {
				endEpoch(round - 1)
			}
			m, l = newMachines(t, n, standalone, ev), newLedger()
		}
		m.down = -1
		if n > 1 && round%epoch != 0 && rng.IntN(4) == 0 {
			m.down = rng.IntN(n) // the others go on without it; it catches up later
		}
		s := m.start()
		ev.note("round %d: %s leads, machine %d left off", round, m.name(s), m.down+1)
		l.mu.Lock()
		l.cut = false
		l.mu.Unlock()
		if round%epoch == 0 {
			setup(t, s)
		} else if err := verify(s.Broker(), l); err != nil {
			t.Fatalf("seed %d, round %d (after %d power cuts on these disks; %s leads): %v\nlast warnings:\n%s", seed, round, round%epoch, m.name(s), err, ev.warnings())
		}
		load(t, m, l, round, rng)
	}
	endEpoch(rounds - 1)
}

func setup(t *testing.T, s *server.Server) {
	t.Helper()
	c, err := client.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, client.GroupSpec{Topic: topicName, Name: groupName}); err != nil {
		t.Fatal(err)
	}
}

// load publishes with three pipelined producers and consumes with one consumer, then
// cuts the power after a random time.
func load(t *testing.T, m *machines, l *ledger, round int, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	c, err := client.Dial(strings.Join(m.addrs(), ","), client.WithRetry(client.RetryPolicy{Attempts: 1}), client.WithClientID("fault-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k, err := c.Subscribe(ctx, topicName, groupName, func(_ context.Context, m *client.Message) error {
		l.mu.Lock()
		if !l.cut {
			l.handled[m.ID] = true
		}
		l.mu.Unlock()
		return nil
	}, client.Concurrency(4))
	if err != nil {
		t.Fatalf("round %d: subscribe: %v", round, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		pr := c.NewProducer(topicName, client.MaxInFlight(64))
		padding := rng.IntN(4096)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pr.Close()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("r%d-p%d-%d-%0*d", round, p, i, padding%(i+1), 0)
				l.mu.Lock()
				l.attempted[body] = true
				l.mu.Unlock()
				err := pr.PublishAsync(ctx, &client.Message{Body: []byte(body)}, func(_ client.PublishResult, err error) {
					if err == nil {
						l.mu.Lock()
						if !l.cut {
							l.acked[body] = true
						}
						l.mu.Unlock()
					}
				})
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
	m.cutPower(l)
	// The clients close while the brokers still run: quickly, and nothing they do
	// reaches the disks any more.
	close(stop)
	k.Close()
	wg.Wait()
	c.Close()
	m.reboot(rng)
}

// verify reads every stored message of the topic and checks the ledger.
func verify(b *broker.Broker, l *ledger) error {
	ti, err := b.GetTopic(topicName)
	if err != nil {
		return fmt.Errorf("topic after the power cut: %v", err)
	}
	seen := map[string]uint64{}
	for off := ti.FirstOffset; off < ti.NextOffset; off++ {
		m, err := b.Read(topicName, off)
		if err != nil {
			return fmt.Errorf("message %d of [%d, %d) does not read back: %v", off, ti.FirstOffset, ti.NextOffset, err)
		}
		body := string(m.Body)
		if !l.attempted[body] {
			return fmt.Errorf("message %d has a body no producer sent: %.40q", off, body)
		}
		if prev, dup := seen[body]; dup {
			return fmt.Errorf("message %.40q stored twice, at %d and %d", body, prev, off)
		}
		seen[body] = off
	}
	for body := range l.acked {
		if _, ok := seen[body]; !ok {
			return fmt.Errorf("message %.40q was acked to its producer and is lost (%d stored, %d acked)", body, len(seen), len(l.acked))
		}
	}
	g, err := b.GetGroup(topicName, groupName)
	if err != nil {
		return fmt.Errorf("group after the power cut: %v", err)
	}
	if g.AckFloor > ti.NextOffset {
		return fmt.Errorf("group position %d is past the end of the log %d", g.AckFloor, ti.NextOffset)
	}
	for off := g.StartOffset; off < g.AckFloor; off++ {
		if !l.handled[broker.FormatOffset(off)] {
			return fmt.Errorf("group position %d passed message %d, which its consumer never acked", g.AckFloor, off)
		}
	}
	return nil
}
