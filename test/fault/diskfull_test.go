package fault_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// mountTmpfs mounts a small tmpfs at a new directory and unmounts it at
// the end of the test. It needs root; without it the test is skipped,
// unless DMQ_REQUIRE_TMPFS=1 (CI) makes that a failure.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, out)
		if os.Getenv("DMQ_REQUIRE_TMPFS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// On a real file system that fills up (the log, and the metadata store
// with its trace records, on the same disk), a real broker process refuses
// publishes with ResourceExhausted and stays up; once space is freed,
// publishing resumes by itself, and after a restart every acked message
// is there.
func TestRealDiskFullAndBack(t *testing.T) {
	disk := mountTmpfs(t, "24m")
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
