package fault_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"github.com/dmqio/dmq/internal/faultfs"
	"google.golang.org/grpc/codes"
)

// Write and fsync errors fail the publish with Unavailable, a full disk
// with ResourceExhausted; nothing failed is stored, not even after a later
// successful fsync or a power cut; and publishing resumes by itself once
// the disk is back.
func TestIOErrorsFailPublishesAndTheBrokerRecovers(t *testing.T) {
	m := newMachines(t, 1, true, newEvents())
	defer m.stop()
	d := m.disks[0]
	s := m.start()
	c, err := client.Dial(s.GRPCAddr(), client.WithRetry(client.RetryPolicy{Attempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	var stored []string
	publish := func(body string) error {
		_, err := c.Publish(ctx, topicName, &client.Message{Body: []byte(body)})
		if err == nil {
			stored = append(stored, body)
		}
		return err
	}
	for i := 0; i < 3; i++ {
		if err := publish(fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name         string
		inject, heal func(*faultfs.FS)
		code         codes.Code
	}{
		{"fsync EIO", func(fs *faultfs.FS) { fs.FailSyncs(syscall.EIO) }, func(fs *faultfs.FS) { fs.FailSyncs(nil) }, codes.Unavailable},
		{"write EIO", func(fs *faultfs.FS) { fs.FailWrites(syscall.EIO) }, func(fs *faultfs.FS) { fs.FailWrites(nil) }, codes.Unavailable},
		{"disk full", func(fs *faultfs.FS) { fs.SetCapacity(fs.Used() + 16) }, func(fs *faultfs.FS) { fs.SetCapacity(0) }, codes.ResourceExhausted},
	} {
		f.inject(d)
		for i := 0; i < 3; i++ { // the failing write, then the failed log
			if err := publish(fmt.Sprintf("failed %s %d: a body longer than sixteen bytes", f.name, i)); client.Code(err) != f.code {
				t.Fatalf("%s: publish = %v, want %v", f.name, err, f.code)
			}
		}
		f.heal(d)
		body := "after " + f.name
		dmqtest.Eventually(t, 10*time.Second, "publishing to resume after "+f.name, func() bool {
			err := publish(body)
			if err != nil && client.Code(err) != f.code {
				t.Fatalf("%s healed: publish = %v", f.name, err)
			}
			return err == nil
		})
	}
	check := func(label string, read func(off uint64) (string, error), first, next uint64) {
		t.Helper()
		var got []string
		for off := first; off < next; off++ {
			body, err := read(off)
			if err != nil {
				t.Fatalf("%s: message %d: %v", label, off, err)
			}
			got = append(got, body)
		}
		if fmt.Sprint(got) != fmt.Sprint(stored) {
			t.Fatalf("%s: stored %q, want exactly the acked %q", label, got, stored)
		}
	}
	b := s.Broker()
	ti, _ := b.GetTopic(topicName)
	check("running", func(off uint64) (string, error) { m, err := b.Read(topicName, off); return string(m.Body), err }, ti.FirstOffset, ti.NextOffset)

	d.CutPowerUnnoticed() // Pebble panics on failing I/O when the broker closes
	m.stop()
	m.disks[0] = d.Crash(rand.New(rand.NewPCG(7, 7)))
	b2 := m.start().Broker()
	ti, _ = b2.GetTopic(topicName)
	check("after a power cut", func(off uint64) (string, error) { m, err := b2.Read(topicName, off); return string(m.Body), err }, ti.FirstOffset, ti.NextOffset)
}
