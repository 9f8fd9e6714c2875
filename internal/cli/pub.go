package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newPubCmd(e *env) *cobra.Command {
	var key, at string
	var headers []string
	var delay time.Duration
	cmd := &cobra.Command{
		Use:   "pub TOPIC [BODY...]",
		Short: "Publish a message, or one message per line of standard input",
		Long: `Publish BODY (the arguments joined by spaces) as one message. Without BODY,
publish one message per line of standard input, pipelined. Prints the id of
each message once the broker stored it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hs, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			var deliverAt time.Time
			if at != "" {
				if deliverAt, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-12-01T08:00:00+08:00", at)
				}
			}
			if delay < 0 {
				return fmt.Errorf("--delay %s is negative", delay)
			}
			newMsg := func(body []byte) *client.Message {
				return &client.Message{Key: key, Headers: hs, Body: body, Delay: delay, DeliverAt: deliverAt}
			}
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			topic := args[0]
			if len(args) > 1 {
				ctx, cancel := e.rpcContext(cmd.Context())
				defer cancel()
				rs, err := c.Publish(ctx, topic, newMsg([]byte(strings.Join(args[1:], " "))))
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, rs[0].ID)
				return nil
			}
			return pubLines(cmd.Context(), e, c, topic, newMsg)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "business key (order id, user id...)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "header k=v (repeatable)")
	cmd.Flags().DurationVar(&delay, "delay", 0, "deliver after this long, e.g. 30m (prints a delayed id to cancel it with)")
	cmd.Flags().StringVar(&at, "at", "", "deliver at this RFC 3339 time, e.g. 2026-12-01T08:00:00+08:00")
	return cmd
}

func parseHeaders(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	hs := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want k=v", kv)
		}
		hs[k] = v
	}
	return hs, nil
}

// pubLines publishes each line of stdin through a pipelined producer and
// prints the ids in input order.
func pubLines(ctx context.Context, e *env, c *client.Client, topic string, newMsg func([]byte) *client.Message) error {
	p := c.NewProducer(topic)
	type answer struct {
		id  string
		err error
	}
	// ids are printed in input order: each line gets a slot, filled by its callback.
	var mu sync.Mutex
	var answers []*answer
	var printed int
	var firstErr error
	printReady := func() {
		for printed < len(answers) {
			a := answers[printed]
			if a.id == "" && a.err == nil {
				return
			}
			if a.err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("line %d: %w", printed+1, a.err)
				}
			} else {
				fmt.Fprintln(e.stdout, a.id)
			}
			answers[printed] = nil
			printed++
		}
	}
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		a := &answer{}
		mu.Lock()
		answers = append(answers, a)
		mu.Unlock()
		err := p.PublishAsync(ctx, newMsg(append([]byte(nil), sc.Bytes()...)), func(r client.PublishResult, err error) {
			mu.Lock()
			a.id, a.err = r.ID, err
			printReady()
			mu.Unlock()
		})
		if err != nil {
			p.Close()
			return err
		}
	}
	if err := p.Close(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}
