package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

// errCountReached nacks messages that arrive after --count was reached, so
// they go back to the group unconsumed.
var errCountReached = errors.New("dmq sub: --count reached")

func newSubCmd(e *env) *cobra.Command {
	var group, clientID string
	var count int
	var idle time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sub TOPIC --group GROUP",
		Short: "Consume messages, print one line each, and ack them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if group == "" {
				return fmt.Errorf("--group is required")
			}
			if count < 0 {
				return fmt.Errorf("--count %d is negative", count)
			}
			var opts []client.Option
			if clientID != "" {
				opts = append(opts, client.WithClientID(clientID))
			}
			c, err := client.Dial(e.server, opts...)
			if err != nil {
				return err
			}
			defer c.Close()
			return subscribe(cmd.Context(), e, c, args[0], group, count, idle, asJSON)
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "consumer group (required)")
	cmd.Flags().StringVar(&clientID, "client-id", "", "client id (names a broadcast member's position; default host-pid)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many messages (0: no limit)")
	cmd.Flags().DurationVar(&idle, "idle", 0, "exit after this long without a message (0: never)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each message as a JSON object")
	return cmd
}

type jsonMessage struct {
	ID          string            `json:"id"`
	Key         string            `json:"key,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Body        string            `json:"body"`
	Attempt     int               `json:"attempt"`
	PublishedAt time.Time         `json:"published_at"`
}

func subscribe(ctx context.Context, e *env, c *client.Client, topic, group string, count int, idle time.Duration, asJSON bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	seen := 0
	activity := make(chan struct{}, 1)
	handler := func(_ context.Context, m *client.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if count > 0 && seen >= count {
			return errCountReached
		}
		if asJSON {
			b, _ := json.Marshal(jsonMessage{ID: m.ID, Key: m.Key, Headers: m.Headers, Body: string(m.Body), Attempt: m.Attempt, PublishedAt: m.PublishedAt})
			fmt.Fprintln(e.stdout, string(b))
		} else {
			fmt.Fprintln(e.stdout, string(m.Body))
		}
		seen++
		select {
		case activity <- struct{}{}:
		default:
		}
		if count > 0 && seen >= count {
			cancel()
		}
		return nil
	}
	prefetch := 256
	if count > 0 {
		prefetch = min(count, prefetch)
	}
	consumer, err := c.Subscribe(ctx, topic, group, handler, client.Prefetch(prefetch))
	if err != nil {
		return err
	}
	var idleC <-chan time.Time
	var timer *time.Timer
	if idle > 0 {
		timer = time.NewTimer(idle)
		defer timer.Stop()
		idleC = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return consumer.Close()
		case <-consumer.Done():
			return consumer.Close()
		case <-activity:
			if timer != nil {
				timer.Reset(idle)
			}
		case <-idleC:
			return consumer.Close()
		}
	}
}
