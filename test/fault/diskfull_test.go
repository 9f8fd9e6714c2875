package fault_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// On a real file system that fills up (the log, and the metadata store
// with its trace records, on the same disk), a real broker process refuses
// publishes with ResourceExhausted and stays up; once space is freed,
// publishing resumes by itself, and after a restart every acked message
// is there.
func TestRealDiskFullAndBack(t *testing.T) {
	disk := dmqtest.MountTmpfs(t, "24m")
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(disk, "data")
	p := dmqtest.StartProcess(t, data, "--segment-bytes", "1048576")
	c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10) }
	acked := 0
	var full error
	for i := 0; i < 1000 && full == nil; i++ { // 64 MiB would not fit in 24
		if _, err := c.Publish(ctx, topicName, &client.Message{Body: body(i)}); err != nil {
			full = err
		} else {
			acked++
		}
	}
	if client.Code(full) != codes.ResourceExhausted {
		t.Fatalf("after %d messages of 64 KiB on a 24 MiB disk: %v, want ResourceExhausted", acked, full)
	}
	// Still full: still refused, and the broker is up.
	if _, err := c.Publish(ctx, topicName, &client.Message{Body: body(acked)}); client.Code(err) != codes.ResourceExhausted {
		t.Fatalf("publish on a full disk: %v, want ResourceExhausted", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "publishing to resume once space is freed", func() bool {
		_, err := c.Publish(ctx, topicName, &client.Message{Body: body(acked)})
		if err == nil {
			acked++
		}
		return err == nil
	})
	t.Logf("%d messages of 64 KiB acked around a full disk", acked)

	p.Stop(t)
	p = dmqtest.StartProcess(t, data, "--segment-bytes", "1048576")
	c = dmqtest.Dial(t, p.Addr)
	tp, err := c.GetTopic(ctx, topicName)
	if err != nil {
		t.Fatal(err)
	}
	if n := tp.Stats.NextOffset - tp.Stats.FirstOffset; n != uint64(acked) {
		t.Fatalf("after the restart the topic stores %d messages, want the %d acked", n, acked)
	}
}
