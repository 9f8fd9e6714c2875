package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
)

// A restart rebuilds the duplicate window from the log, but reads no more
// than the window can hold (DedupeMaxIDs records), so its time and memory
// stay bounded however much was published just before.
func TestRestartRebuildsABoundedDuplicateWindow(t *testing.T) {
	cfg := Config{DataDir: "/data", FS: faultfs.New(), DedupeMaxIDs: 100, Logger: slog.New(slog.DiscardHandler)}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic(meta.Topic{Name: "test.dedupe.t"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	publish := func(b *Broker, i int) PublishResult {
		t.Helper()
		// Ids not of the SDK's shape: kept one by one (TestProducerRuns covers runs).
		rs, err := b.Publish(ctx, "test.dedupe.t", Origin{}, []*message.Message{{ClientMessageID: fmt.Sprint("c_", i), Body: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		return rs[0]
	}
	for i := 0; i < 1000; i++ {
		publish(b, i)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tp, _ := b.topic("test.dedupe.t")
	tp.dedupe.mu.Lock()
	ids := len(tp.dedupe.stored)
	tp.dedupe.mu.Unlock()
	if ids != 100 {
		t.Fatalf("the rebuilt window holds %d ids, want the last 100", ids)
	}
	if r := publish(b, 999); !r.Duplicate || r.Offset != 999 {
		t.Fatalf("a retransmission of the last message = %+v, want a duplicate of offset 999", r)
	}
	if r := publish(b, 900); !r.Duplicate || r.Offset != 900 {
		t.Fatalf("a retransmission of message 900 = %+v, want a duplicate of offset 900", r)
	}
	if r := publish(b, 0); r.Duplicate {
		t.Fatalf("message 0, beyond the window's bound, was found: %+v", r)
	}
}

func TestProducerIDShape(t *testing.T) {
	for _, c := range []struct {
		id     string
		prefix string
		n      uint64
		ok     bool
	}{
		{"3f2a9c1d00e4b7a1-1", "3f2a9c1d00e4b7a1-", 1, true},
		{"p-0", "p-", 0, true},
		{"p-z", "p-", 35, true},
		{"p-10", "p-", 36, true},
		{"a-b-c", "a-b-", 12, true},
		{"-7", "-", 7, true},
		{"p-zzzzzzzzzzzz", "p-", 4738381338321616895, true}, // 36^12 - 1
		{"p-1000000000000", "", 0, false},                   // 13 digits
		{"p-01", "", 0, false},                              // not canonical: "p-1" is that counter
		{"p-A", "", 0, false},
		{"p-", "", 0, false},
		{"p-1 ", "", 0, false},
		{"order-1234", "order-", 1*36*36*36 + 2*36*36 + 3*36 + 4, true},
		{"nodash", "", 0, false},
	} {
		prefix, n, ok := producerID(c.id)
		if ok != c.ok || prefix != c.prefix || n != c.n {
			t.Errorf("producerID(%q) = %q, %d, %v; want %q, %d, %v", c.id, prefix, n, ok, c.prefix, c.n, c.ok)
		}
	}
}

// sdkID names message n of producer p as the SDK does.
func sdkID(p string, n uint64) string { return p + "-" + strconv.FormatUint(n, 36) }

// Ids of the SDK's shape are kept as runs per producer: a few entries for
// thousands of messages, every retransmission found with its offset, before
// and after a restart; ids out of order, delayed messages and copies inside
// one batch are deduplicated too.
func TestProducerRuns(t *testing.T) {
	cfg := Config{DataDir: "/data", FS: faultfs.New(), Logger: slog.New(slog.DiscardHandler)}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "test.dedupe.runs"
	if _, err := b.CreateTopic(meta.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	publish := func(b *Broker, ms ...*message.Message) []PublishResult {
		t.Helper()
		rs, err := b.Publish(ctx, topic, Origin{}, ms)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	// Two producers, 30 batches of 100 each, interleaved batch by batch.
	offsets := map[string]uint64{}
	for batch := 0; batch < 30; batch++ {
		for _, p := range []string{"aaaa", "bbbb"} {
			var ms []*message.Message
			for j := 1; j <= 100; j++ {
				ms = append(ms, &message.Message{ClientMessageID: sdkID(p, uint64(batch*100+j)), Body: []byte("x")})
			}
			for k, r := range publish(b, ms...) {
				if r.Duplicate {
					t.Fatalf("%s stored as a duplicate", ms[k].ClientMessageID)
				}
				offsets[ms[k].ClientMessageID] = r.Offset
			}
		}
	}
	check := func(b *Broker, when string) {
		t.Helper()
		tp, _ := b.topic(topic)
		tp.dedupe.mu.Lock()
		runs, one := tp.dedupe.runs, len(tp.dedupe.stored)
		tp.dedupe.mu.Unlock()
		if runs != 60 || one != 0 {
			t.Fatalf("%s: the window keeps %d runs and %d single ids for 6,000 messages in 60 batches; want 60 and 0", when, runs, one)
		}
		for _, n := range []uint64{1, 100, 101, 1550, 3000} {
			for _, p := range []string{"aaaa", "bbbb"} {
				id := sdkID(p, n)
				r := publish(b, &message.Message{ClientMessageID: id, Body: []byte("again")})[0]
				if !r.Duplicate || r.Offset != offsets[id] {
					t.Fatalf("%s: retransmission of %s = %+v, want a duplicate of offset %d", when, id, r, offsets[id])
				}
			}
		}
	}
	check(b, "before the restart")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	check(b, "after the restart")

	// An id below the producer's last counter that was never stored is new,
	// and then found (kept one by one).
	late := sdkID("aaaa", 5000)
	publish(b, &message.Message{ClientMessageID: sdkID("aaaa", 6000), Body: []byte("x")})
	first := publish(b, &message.Message{ClientMessageID: late, Body: []byte("x")})[0]
	again := publish(b, &message.Message{ClientMessageID: late, Body: []byte("x")})[0]
	if first.Duplicate || !again.Duplicate || again.Offset != first.Offset {
		t.Fatalf("id out of order: first %+v, again %+v; want stored, then its duplicate", first, again)
	}
	// Two copies in one batch: stored once, both answered with its offset.
	twice := sdkID("cccc", 1)
	rs := publish(b, &message.Message{ClientMessageID: twice, Body: []byte("x")}, &message.Message{ClientMessageID: twice, Body: []byte("x")})
	if rs[0].Duplicate || !rs[1].Duplicate || rs[0].Offset != rs[1].Offset {
		t.Fatalf("two copies in one batch = %+v, want the second a duplicate of the first", rs)
	}
	// A delayed message with an SDK id.
	delayed := &message.Message{ClientMessageID: sdkID("dddd", 1), Body: []byte("x"), DeliverAtMs: time.Now().Add(time.Hour).UnixMilli()}
	d1 := publish(b, delayed)[0]
	d2 := publish(b, delayed)[0]
	if d1.DelayID == "" || !d2.Duplicate || d2.DelayID != d1.DelayID {
		t.Fatalf("delayed message published twice = %+v then %+v, want one delay id", d1, d2)
	}
	// Nothing stays reserved once the publishes are answered.
	tp, _ := b.topic(topic)
	tp.dedupe.mu.Lock()
	defer tp.dedupe.mu.Unlock()
	for prefix, p := range tp.dedupe.producers {
		if len(p.pending) != 0 {
			t.Fatalf("producer %q still has reserved counters %v", prefix, p.pending)
		}
	}
	if len(tp.dedupe.pending) != 0 || len(tp.dedupe.waitingRuns) != 0 {
		t.Fatalf("pending ids left: %d hashed, %d waiting", len(tp.dedupe.pending), len(tp.dedupe.waitingRuns))
	}
}

// DedupeMaxIDs bounds the runs too: the oldest are forgotten first.
func TestProducerRunsAreBounded(t *testing.T) {
	cfg := Config{DataDir: "/data", FS: faultfs.New(), DedupeMaxIDs: 10, Logger: slog.New(slog.DiscardHandler)}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const topic = "test.dedupe.bound"
	if _, err := b.CreateTopic(meta.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	publish := func(n uint64) PublishResult {
		t.Helper()
		rs, err := b.Publish(context.Background(), topic, Origin{}, []*message.Message{{ClientMessageID: sdkID("p", n), Body: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		return rs[0]
	}
	for n := uint64(0); n < 100; n += 2 { // every other counter: one run per message
		publish(n)
	}
	tp, _ := b.topic(topic)
	tp.dedupe.mu.Lock()
	runs := tp.dedupe.runs
	tp.dedupe.mu.Unlock()
	if runs > 11 { // the bound, and the run the last publish started
		t.Fatalf("%d runs kept, want at most 11 with DedupeMaxIDs 10", runs)
	}
	if r := publish(98); !r.Duplicate {
		t.Fatalf("the newest id was forgotten: %+v", r)
	}
	if r := publish(0); r.Duplicate {
		t.Fatalf("the oldest id, beyond the bound, was found: %+v", r)
	}
}

// Runs made in the same millisecond are kept by the bound in the order they grew: the
// newest stays, the oldest go (a cut by time dropped every run of that millisecond).
func TestRunsOfOneMillisecondKeepTheNewest(t *testing.T) {
	d := newDedupeWindow(time.Minute, 3)
	const atMs = 1_000_000
	d.mu.Lock()
	defer d.mu.Unlock()
	for n := uint64(0); n < 20; n += 2 { // one run per id: offsets are not consecutive
		d.rememberLocked(sdkID("p", n), n*10, atMs)
	}
	d.expireLocked(atMs)
	if d.runs != 3 {
		t.Fatalf("%d runs kept, want 3", d.runs)
	}
	p := d.producers["p-"]
	for n := uint64(0); n < 20; n += 2 {
		_, found := p.find(n)
		if want := n >= 14; found != want {
			t.Errorf("id %d kept: %t, want %t (the three newest runs only)", n, found, want)
		}
	}
}
