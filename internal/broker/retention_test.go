package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
)

func openTestBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.RetentionInterval = time.Hour // tests call applyRetention themselves
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func publishBodies(t *testing.T, b *Broker, topic string, n, size int) {
	t.Helper()
	for i := 0; i < n; i++ {
		body := make([]byte, size)
		copy(body, fmt.Sprint(i))
		if _, err := b.Publish(context.Background(), topic, Origin{Client: "test"}, []*message.Message{{Body: body}}); err != nil {
			t.Fatal(err)
		}
	}
}

// Segments go only once every group has acked all of them, and only when
// old enough or beyond the size bound.
func TestRetentionRemovesOnlySegmentsEveryGroupPassed(t *testing.T) {
	b := openTestBroker(t, Config{SegmentBytes: 4096, RetentionAge: time.Hour})
	const topic = "test.ret.a"
	if _, err := b.CreateTopic(meta.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateGroup(GroupSpec{Topic: topic, Name: "g", Earliest: true}); err != nil {
		t.Fatal(err)
	}
	publishBodies(t, b, topic, 100, 500) // about 12 segments of 4 KiB
	tp, _ := b.GetTopic(topic)
	if tp.Segments < 5 {
		t.Fatalf("only %d segments; the test needs several", tp.Segments)
	}

	// Nothing acked: nothing removed, even long after the retention age.
	if n := b.applyRetention(time.Now().Add(48 * time.Hour)); n != 0 {
		t.Fatalf("removed %d segments with nothing acked", n)
	}
	// Consume and ack the first 50: segments wholly below 50 may go once old.
	consumeAndAck(t, b, topic, "g", 50)
	if n := b.applyRetention(time.Now()); n != 0 {
		t.Fatalf("removed %d young segments", n)
	}
	if n := b.applyRetention(time.Now().Add(2 * time.Hour)); n == 0 {
		t.Fatal("removed no old, consumed segment")
	}
	tp, _ = b.GetTopic(topic)
	if tp.FirstOffset == 0 || tp.FirstOffset > 50 {
		t.Fatalf("first offset after retention = %d, want in (0, 50]", tp.FirstOffset)
	}
	// Everything still stored is readable, everything unacked still there.
	for off := tp.FirstOffset; off < 100; off++ {
		m, err := b.Read(topic, off)
		if err != nil || string(m.Body[:len(fmt.Sprint(off))]) != fmt.Sprint(off) {
			t.Fatalf("Read(%d) = %q, %v", off, m.Body[:8], err)
		}
	}
}

func TestRetentionBySize(t *testing.T) {
	b := openTestBroker(t, Config{SegmentBytes: 4096, RetentionAge: 1000 * time.Hour, RetentionBytes: 8192})
	const topic = "test.ret.size"
	if _, err := b.CreateTopic(meta.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	// No group: the whole log counts as consumed.
	publishBodies(t, b, topic, 100, 500)
	if n := b.applyRetention(time.Now()); n == 0 {
		t.Fatal("size bound removed nothing")
	}
	tp, _ := b.GetTopic(topic)
	if tp.StoredBytes > 8192+4096+1024 {
		t.Fatalf("stored %d bytes after size retention of 8192", tp.StoredBytes)
	}
	if tp.NextOffset != 100 {
		t.Fatalf("next offset = %d, want 100", tp.NextOffset)
	}
}

// A reset to a time whose messages retention already removed is refused
// and changes nothing; a reset to a stored time works.
func TestResetBeforeRetentionIsRefused(t *testing.T) {
	b := openTestBroker(t, Config{SegmentBytes: 4096, RetentionAge: time.Hour})
	const topic = "test.ret.reset"
	if _, err := b.CreateTopic(meta.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	publishBodies(t, b, topic, 100, 500)
	if n := b.applyRetention(time.Now().Add(2 * time.Hour)); n == 0 {
		t.Fatal("retention removed nothing")
	}
	if _, err := b.CreateGroup(GroupSpec{Topic: topic, Name: "g"}); err != nil {
		t.Fatal(err)
	}
	g0, _ := b.GetGroup(topic, "g")
	_, err := b.ResetGroup(topic, "g", ResetTarget{Time: before})
	if KindOf(err) != KindPrecondition {
		t.Fatalf("reset before retention: %v, want a precondition error", err)
	}
	if g, _ := b.GetGroup(topic, "g"); g.AckFloor != g0.AckFloor {
		t.Fatalf("refused reset moved the group from %d to %d", g0.AckFloor, g.AckFloor)
	}
	g, err := b.ResetGroup(topic, "g", ResetTarget{Earliest: true})
	if err != nil || g.AckFloor != b.mustTopic(t, topic).FirstOffset {
		t.Fatalf("reset to earliest = %+v, %v", g, err)
	}
}

func (b *Broker) mustTopic(t *testing.T, name string) TopicInfo {
	t.Helper()
	ti, err := b.GetTopic(name)
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// consumeAndAck subscribes to a group, takes n deliveries and acks them.
func consumeAndAck(t *testing.T, b *Broker, topic, group string, n int) {
	t.Helper()
	sub, err := b.Subscribe(topic, group, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Grant(uint32(n)); err != nil {
		t.Fatal(err)
	}
	var offs []uint64
	deadline := time.After(10 * time.Second)
	for len(offs) < n {
		select {
		case <-sub.Ready():
			for _, d := range sub.Take() {
				offs = append(offs, d.Offset)
			}
		case <-deadline:
			t.Fatalf("got %d of %d deliveries", len(offs), n)
		}
	}
	if err := sub.Ack(offs); err != nil {
		t.Fatal(err)
	}
}
