package e2e

import (
	"context"
	"testing"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// BenchmarkRoundTrip measures one caller's synchronous calls to a real
// broker over loopback gRPC (ns/op is the latency): a call that reads a
// topic record from memory (the floor of any call), a 1 KiB publish acked
// after its fsync (W2 of issue 9), and the same publish on a broker that
// does not fsync. The differences split W2's latency into gRPC and disk.
// Client and broker share this process here; W2 runs them apart.
//
//	go test -run '^$' -bench RoundTrip -benchtime 3000x ./test/e2e
func BenchmarkRoundTrip(b *testing.B) {
	body := make([]byte, 1024)
	for _, bc := range []struct {
		name   string
		noSync bool
		call   func(ctx context.Context, c *client.Client) error
	}{
		{"get-topic", false, func(ctx context.Context, c *client.Client) error {
			_, err := c.GetTopic(ctx, "test.latency.t")
			return err
		}},
		{"publish-1KiB-fsync", false, func(ctx context.Context, c *client.Client) error {
			_, err := c.Publish(ctx, "test.latency.t", &client.Message{Body: body})
			return err
		}},
		{"publish-1KiB-nosync", true, func(ctx context.Context, c *client.Client) error {
			_, err := c.Publish(ctx, "test.latency.t", &client.Message{Body: body})
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := dmqtest.Start(b, "", func(c *config.Config) { c.NoSync = bc.noSync })
			c := dmqtest.Dial(b, s.GRPCAddr())
			ctx := context.Background()
			if _, err := c.CreateTopic(ctx, client.TopicSpec{Name: "test.latency.t"}); err != nil {
				b.Fatal(err)
			}
			for range 200 { // warm up connections, buffers and the segment
				if err := bc.call(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if err := bc.call(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
