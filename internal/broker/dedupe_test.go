package broker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/faultfs"
	"github.com/dmqio/dmq/internal/message"
	"github.com/dmqio/dmq/internal/meta"
)

// A restart rebuilds the duplicate window from the log, but reads no more
// than the window can hold (DedupeMaxIDs records), so its time and memory
// stay bounded however much was published just before.
func TestRestartRebuildsABoundedDuplicateWindow(t *testing.T) {
	logFS, metaFS := faultfs.New(), vfs.NewMem()
	cfg := Config{DataDir: "/data", LogFS: logFS, MetaFS: metaFS, DedupeMaxIDs: 100, Logger: slog.New(slog.DiscardHandler)}
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
		rs, err := b.Publish(ctx, "test.dedupe.t", Origin{}, []*message.Message{{ClientMessageID: fmt.Sprint("c-", i), Body: []byte("x")}})
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
