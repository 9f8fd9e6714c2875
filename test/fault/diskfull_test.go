package fault_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10) }
	disk := dmqtest.MountTmpfs(t, "24m")
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(disk, "data")
	p := dmqtest.StartProcess(t, data, "--segment-bytes", "1048576")
	c := dmqtest.Dial(t, p.Addr, client.WithRetry(client.RetryPolicy{Attempts: 1}))
	ctx := context.Background()
	// Every publish answers within its deadline, stored or refused: one that does not
	// is a broker stuck on the full disk, and its goroutines say where.
	publish := func(i int) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := c.Publish(ctx, topicName, &client.Message{Body: body(i)})
		if client.Code(err) == codes.DeadlineExceeded {
			t.Fatalf("publish %d got no answer in 30s on a disk that filled:\n%s", i, p.Dump())
		}
		return err
	}
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	// A publish already in the log when the topic log's write failed is answered
	// "outcome unknown" (Unavailable): the node cannot apply it until the disk has
	// room, and then stores it.
	acked, unknown := 0, 0
	var full error
	for i := 0; i < 1000 && full == nil; i++ { // 64 MiB would not fit in 24
		switch err := publish(i); {
		case err == nil:
			acked++
		case client.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "outcome unknown"):
			unknown++
		default:
			full = err
		}
	}
	if client.Code(full) != codes.ResourceExhausted {
		t.Fatalf("after %d messages of 64 KiB on a 24 MiB disk: %v, want ResourceExhausted", acked, full)
	}
	// Still full: still refused, and the broker is up.
	if err := publish(acked); client.Code(err) != codes.ResourceExhausted {
		t.Fatalf("publish on a full disk: %v, want ResourceExhausted", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dmqtest.Eventually(t, 10*time.Second, "publishing to resume once space is freed", func() bool {
		err := publish(acked)
		if err == nil {
			acked++
		}
		return err == nil
	})
	t.Logf("%d messages of 64 KiB acked around a full disk, %d of unknown outcome", acked, unknown)

	p.Stop(t)
	p = dmqtest.StartProcess(t, data, "--segment-bytes", "1048576")
	c = dmqtest.Dial(t, p.Addr)
	tp, err := c.GetTopic(ctx, topicName)
	if err != nil {
		t.Fatal(err)
	}
	if n := tp.Stats.NextOffset - tp.Stats.FirstOffset; n < uint64(acked) || n > uint64(acked+unknown) {
		t.Fatalf("after the restart the topic stores %d messages, want the %d acked and at most the %d of unknown outcome", n, acked, unknown)
	}
}
