package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
)

// Deleting a topic ends its consumers with NotFound; a topic created again under
// the name starts with empty statistics.
func TestDeletedTopicEndsConsumersAndStatsStartAfresh(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.topics.again"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})
	k := subscribe(t, dmqtest.Dial(t, s.GRPCAddr()), topic, "g", "g-1", func(context.Context, *client.Message) error { return nil })
	publishN(t, c, topic, 10)
	waitAcked(t, c, topic, "g", 10)
	if err := c.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.Done():
		if client.Code(k.Err()) != codes.NotFound {
			t.Fatalf("the consumer ended with %v, want NotFound", k.Err())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the consumer of a deleted topic did not end")
	}
	setupTopic(t, c, topic)
	now := time.Now()
	st, err := c.TopicStats(ctx, topic, client.StatsQuery{From: now.Add(-time.Hour), To: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Produced.GetTotal() != 0 || st.Consumed.GetTotal() != 0 {
		t.Fatalf("the topic created again shows produced %d, consumed %d; want empty statistics", st.Produced.GetTotal(), st.Consumed.GetTotal())
	}
}
