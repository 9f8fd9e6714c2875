package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// Under load the trace of every message is in the order things happened: published
// before delivered, delivered before acked. The delivery used to be stamped with the
// time its dispatch pass began, before it waited for the group's lock and looked up
// the log's end, so a message stored meanwhile showed "delivered" before
// "published".
func TestTraceOrderUnderLoad(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic, producers, perProducer = "test.trace.load", 4, 2500
	// A broadcast group's pass over its members' cursors takes longest.
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"}, client.GroupSpec{Name: "h", Mode: client.Broadcast})
	for _, group := range []string{"g", "h"} {
		for i := range 4 {
			subscribe(t, dmqtest.Dial(t, s.GRPCAddr()), topic, group, fmt.Sprintf("%s-%d", group, i),
				func(context.Context, *client.Message) error { return nil })
		}
	}
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.NewProducer(topic)
			defer p.Close()
			for j := range perProducer {
				err := p.PublishAsync(ctx, &client.Message{Body: []byte(fmt.Sprintf("%d-%d", i, j))}, func(r client.PublishResult, err error) {
					if err == nil {
						mu.Lock()
						ids = append(ids, r.ID)
						mu.Unlock()
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
			p.Flush(ctx)
		}()
	}
	wg.Wait()
	if len(ids) != producers*perProducer {
		t.Fatalf("%d of %d publishes acknowledged", len(ids), producers*perProducer)
	}
	waitAcked(t, c, topic, "g", producers*perProducer)
	waitAcked(t, c, topic, "h", producers*perProducer)
	bad := 0
	for _, id := range ids {
		tr, err := c.Trace(ctx, topic, id)
		if err != nil {
			t.Fatalf("trace of %s: %v", id, err)
		}
		ev := tr.Events
		ok := len(ev) > 0 && ev[0].Kind == "published"
		for _, e := range ev[1:] {
			ok = ok && e.TimeMs >= ev[0].TimeMs
		}
		if !ok {
			if bad++; bad <= 5 {
				var s string
				for _, e := range ev {
					s += fmt.Sprintf(" %s@%d", e.Kind, e.TimeMs)
				}
				t.Errorf("trace of %s out of order:%s", id, s)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d traces out of order", bad, len(ids))
	}
}
