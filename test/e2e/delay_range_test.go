package e2e

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A delay or deliver-at beyond --max-delay from now is refused with InvalidArgument,
// whatever its size: values that overflowed (a delay near the int64 maximum, a year
// after 2262) were stored for immediate delivery. Nothing refused is stored.
func TestDelaysBeyondTheMaximumAreRefused(t *testing.T) {
	const maxDelay = 48 * time.Hour
	s := dmqtest.Start(t, "", func(c *config.Config) { c.MaxDelay = maxDelay })
	c := dmqtest.Dial(t, s.GRPCAddr())
	ctx := context.Background()
	const topic = "test.delay.range"
	setupTopic(t, c, topic, client.GroupSpec{Name: "g"})

	y2263 := time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC)
	sdk := []struct {
		name string
		m    *client.Message
	}{
		{"largest Duration", (&client.Message{Body: []byte("x")}).WithDelay(time.Duration(math.MaxInt64))},
		{"just beyond the maximum", (&client.Message{Body: []byte("x")}).WithDelay(maxDelay + time.Minute)},
		{"deliver at 2263-01-01", (&client.Message{Body: []byte("x")}).WithDeliverAt(y2263)},
		{"deliver at year 9999", (&client.Message{Body: []byte("x")}).WithDeliverAt(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))},
		{"deliver just beyond the maximum", (&client.Message{Body: []byte("x")}).WithDeliverAt(time.Now().Add(maxDelay + time.Minute))},
	}
	for _, tc := range sdk {
		t.Run("sdk "+tc.name, func(t *testing.T) {
			_, err := c.Publish(ctx, topic, tc.m)
			if client.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "maximum delay of 48h0m0s") {
				t.Fatalf("got %v, want InvalidArgument naming the maximum delay", err)
			}
		})
	}
	wire := []struct {
		name string
		m    *dmqv1.OutgoingMessage
	}{
		{"delay_ms int64 max", &dmqv1.OutgoingMessage{Body: []byte("x"), DelayMs: math.MaxInt64}},
		{"delay_ms int64 max minus now", &dmqv1.OutgoingMessage{Body: []byte("x"), DelayMs: math.MaxInt64 - time.Now().UnixMilli() + 1}},
		{"delay_ms 2^62", &dmqv1.OutgoingMessage{Body: []byte("x"), DelayMs: 1 << 62}},
		{"deliver_at_ms int64 max", &dmqv1.OutgoingMessage{Body: []byte("x"), DeliverAtMs: math.MaxInt64}},
		{"deliver_at_ms 2263", &dmqv1.OutgoingMessage{Body: []byte("x"), DeliverAtMs: y2263.UnixMilli()}},
	}
	for _, tc := range wire {
		for _, stream := range []bool{false, true} {
			name := "unary " + tc.name
			if stream {
				name = "stream " + tc.name
			}
			t.Run(name, func(t *testing.T) {
				var err error
				if stream {
					err = publishOnStream(ctx, t, c, topic, tc.m)
				} else {
					_, err = c.API().Publish(ctx, &dmqv1.PublishRequest{Topic: topic, Messages: []*dmqv1.OutgoingMessage{tc.m}})
				}
				if client.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "maximum delay of 48h0m0s") {
					t.Fatalf("got %v, want InvalidArgument naming the maximum delay", err)
				}
			})
		}
	}
	// Nothing refused was stored or scheduled; a delay within the maximum still is.
	if tp, err := c.GetTopic(ctx, topic); err != nil || tp.Stats.NextOffset != 0 {
		t.Fatalf("refused publishes stored messages: %+v, %v", tp, err)
	}
	if page, err := c.ListDelayed(ctx, topic, client.DelayedFilter{}); err != nil || page.Total != 0 {
		t.Fatalf("refused publishes scheduled %d messages (%v)", page.Total, err)
	}
	for _, m := range []*client.Message{
		(&client.Message{Body: []byte("in range")}).WithDelay(maxDelay - time.Minute),
		(&client.Message{Body: []byte("in range")}).WithDeliverAt(time.Now().Add(maxDelay - time.Minute)),
	} {
		if _, err := c.Publish(ctx, topic, m); err != nil {
			t.Fatalf("a delay within the maximum: %v", err)
		}
	}
	if page, err := c.ListDelayed(ctx, topic, client.DelayedFilter{}); err != nil || page.Total != 2 {
		t.Fatalf("delays within the maximum: %d scheduled (%v), want 2", page.Total, err)
	}
}

// publishOnStream sends one message on a publish stream and returns its result's error.
func publishOnStream(ctx context.Context, t *testing.T, c *client.Client, topic string, m *dmqv1.OutgoingMessage) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.API().PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&dmqv1.PublishRequest{Topic: topic, Sequence: 1, Messages: []*dmqv1.OutgoingMessage{m}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		return err
	}
	st.CloseSend()
	return resultError(resp.Results[0])
}

// resultError is a publish result's error as a status error (nil when stored).
func resultError(r *dmqv1.PublishResult) error {
	if e := r.GetError(); e != nil {
		return status.Error(codes.Code(e.Code), e.Message)
	}
	return nil
}
