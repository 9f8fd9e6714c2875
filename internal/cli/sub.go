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

// errNotAcked gives back messages held with --no-ack when the command exits.
var errNotAcked = errors.New("dmq sub: --no-ack")

func newSubCmd(e *env) *cobra.Command {
	var group, clientID string
	var count int
	var idle time.Duration
	var asJSON, noAck bool
	cmd := &cobra.Command{
		Use:   "sub TOPIC --group GROUP",
		Short: "Consume messages, print one line each, and ack them",
		Long: `Consume messages of a group, print one line each (the body, or a JSON object
with --json) and ack each printed message. With --no-ack, printed messages are
held unacked until the command exits: after the group's ack timeout the broker
redelivers them to other members, and on exit they go back to the group.

While the broker cannot be reached the command waits and re-attaches by itself.
It exits with 1 and the error when the subscription cannot work again: its
token was revoked (Unauthenticated) or lacks the grant (PermissionDenied), its
topic or group was deleted (NotFound), its topic was disabled
(FailedPrecondition). SIGINT or SIGTERM stop it at any moment: the message being
printed is acked, the others go back to the group, and it exits with 130
(SIGINT) or 143 (SIGTERM); a second signal ends it at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if group == "" {
				return fmt.Errorf("--group is required")
			}
			if count < 0 {
				return fmt.Errorf("--count %d is negative", count)
			}
			opts, err := e.dialOptions()
			if err != nil {
				return err
			}
			if clientID != "" {
				opts = append(opts, client.WithClientID(clientID))
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			c, err := client.Dial(e.server, opts...)
			if err != nil {
				return err
			}
			defer c.Close()
			err = subscribe(ctx, e, c, args[0], group, subOptions{count: count, idle: idle, asJSON: asJSON, noAck: noAck})
			if in := interruption(ctx); in != nil {
				if err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("%w; %s", in, describe(err))
				}
				return in
			}
			return err
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "consumer group (required)")
	cmd.Flags().StringVar(&clientID, "client-id", "", "client id (names a broadcast member's position; default host-pid)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many messages (0: no limit)")
	cmd.Flags().DurationVar(&idle, "idle", 0, "exit after this long without a message (0: never)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each message as a JSON object")
	cmd.Flags().BoolVar(&noAck, "no-ack", false, "hold printed messages unacked until exit (see redeliveries)")
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

type subOptions struct {
	count         int
	idle          time.Duration
	asJSON, noAck bool
}

func subscribe(ctx context.Context, e *env, c *client.Client, topic, group string, o subOptions) error {
	count, idle := o.count, o.idle
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	seen := 0
	activity := make(chan struct{}, 1)
	handler := func(_ context.Context, m *client.Message) error {
		mu.Lock()
		if count > 0 && seen >= count {
			mu.Unlock()
			return errCountReached
		}
		if o.asJSON {
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
		if count > 0 && seen >= count && !o.noAck {
			cancel()
		}
		mu.Unlock()
		if o.noAck {
			<-ctx.Done() // held until the command ends
			return errNotAcked
		}
		return nil
	}
	prefetch := 256
	if count > 0 {
		prefetch = min(count, prefetch)
	}
	concurrency := 1
	if o.noAck {
		concurrency = prefetch // every held message occupies a handler
	}
	consumer, err := c.Subscribe(ctx, topic, group, handler, client.Prefetch(prefetch), client.Concurrency(concurrency))
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
			cancel()
			return consumer.Close()
		case <-activity:
			if timer != nil {
				timer.Reset(idle)
			}
		case <-idleC:
			cancel() // releases handlers holding --no-ack messages
			return consumer.Close()
		}
	}
}
