package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

func newPubCmd(e *env) *cobra.Command {
	var key, at string
	var headers []string
	var delay, retryFor time.Duration
	cmd := &cobra.Command{
		Use:   "pub TOPIC [BODY...]",
		Short: "Publish a message, or one message per line of standard input",
		Long: `Publish BODY (the arguments joined by spaces) as one message. Without BODY,
publish one message per line of standard input (empty lines are skipped),
pipelined. Prints the id of each message once the broker stored it.

While the broker cannot be reached, unanswered lines are sent again (with the
same client message ids, so none is stored twice) for --retry-for since the
first failure; then every unanswered line fails, the reading stops, and the
command prints how many lines were stored and exits with 1. A line the broker
refuses (InvalidArgument) is reported and the others go on; other refusals stop
the reading too. SIGINT or SIGTERM stop it at any moment: lines already sent
get a second to be answered, then the command prints how many were stored and
exits with 130 (SIGINT) or 143 (SIGTERM); a second signal ends it at once.`,
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
			if delay != 0 && at != "" {
				return fmt.Errorf("--delay and --at exclude each other: give one")
			}
			newMsg := func(body []byte) *client.Message {
				return &client.Message{Key: key, Headers: hs, Body: body, Delay: delay, DeliverAt: deliverAt}
			}
			if retryFor < 0 {
				return fmt.Errorf("--retry-for %s is negative", retryFor)
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			topic := args[0]
			if len(args) > 1 {
				rctx, cancel := e.rpcContext(ctx)
				defer cancel()
				rs, err := c.Publish(rctx, topic, newMsg([]byte(strings.Join(args[1:], " "))))
				if in := interruption(ctx); in != nil {
					return in
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, rs[0].ID)
				return nil
			}
			retry := client.RetryPolicy{Attempts: 1}
			if retryFor > 0 {
				retry = client.RetryPolicy{Attempts: math.MaxInt32, Backoff: client.DefaultRetry.Backoff,
					MaxBackoff: client.DefaultRetry.MaxBackoff, MaxElapsed: retryFor}
			}
			return pubLines(ctx, e, c, topic, newMsg, retry)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "business key (order id, user id...)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "header k=v (repeatable)")
	cmd.Flags().DurationVar(&delay, "delay", 0, "deliver after this long, e.g. 30m (prints a delayed id to cancel it with)")
	cmd.Flags().DurationVar(&retryFor, "retry-for", 30*time.Second, "with standard input: give up when the broker has not answered for this long (0: no retransmission)")
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
// prints the ids in input order. A line the broker refuses (InvalidArgument) is
// reported and the others go on; any other failure (the retry budget spent,
// a revoked token, a deleted topic...) stops the reading, as SIGINT and SIGTERM
// do (then the answers of lines already sent are awaited for a second). The
// error says how many lines were stored. Empty lines are skipped: a message
// needs a body, and one empty line would fail the batch it was sent in.
func pubLines(ctx context.Context, e *env, c *client.Client, topic string, newMsg func([]byte) *client.Message, retry client.RetryPolicy) error {
	p := c.NewProducer(topic, client.ProducerRetry(retry))
	// stopRead ends the reading at a failure that later lines would share.
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	type answer struct {
		line int // of standard input
		id   string
		err  error
	}
	// ids are printed in input order: each line gets a slot, filled by its callback.
	var mu sync.Mutex
	var answers []*answer
	var printed, stored, unknown int // unknown: failed without a "not stored"
	var firstErr error
	var firstErrLine int
	printReady := func() {
		for printed < len(answers) {
			a := answers[printed]
			if a.id == "" && a.err == nil {
				return
			}
			if a.err != nil {
				if firstErr == nil {
					firstErr, firstErrLine = a.err, a.line
				}
			} else {
				fmt.Fprintln(e.stdout, a.id)
			}
			answers[printed] = nil
			printed++
		}
	}
	// The reader may block on a terminal or a pipe for ever: it runs apart so
	// that a signal ends the command at once.
	type input struct {
		n    int
		body []byte
	}
	lines := make(chan input)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for n := 1; sc.Scan(); n++ {
			if len(sc.Bytes()) == 0 {
				continue
			}
			select {
			case lines <- input{n, append([]byte(nil), sc.Bytes()...)}:
			case <-readCtx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	var pubErr error // PublishAsync's own
read:
	for {
		var line input
		var ok bool
		select {
		case line, ok = <-lines:
			if !ok {
				break read
			}
		case <-readCtx.Done():
			break read
		}
		a := &answer{line: line.n}
		mu.Lock()
		answers = append(answers, a)
		mu.Unlock()
		err := p.PublishAsync(readCtx, newMsg(line.body), func(r client.PublishResult, err error) {
			mu.Lock()
			a.id, a.err = r.ID, err
			if err == nil {
				stored++
			} else if client.Code(err) != codes.InvalidArgument {
				stopRead()
			}
			if outcomeUnknown(err) {
				unknown++
			}
			printReady()
			mu.Unlock()
		})
		if err != nil {
			if readCtx.Err() == nil {
				pubErr = err
			}
			mu.Lock()
			answers = answers[:len(answers)-1] // not sent
			mu.Unlock()
			break
		}
	}
	var closeErr error
	if ctx.Err() != nil {
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		closeErr = p.Shutdown(grace)
		cancel()
	} else {
		closeErr = p.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	summary := fmt.Sprintf("%d of %d lines read were stored", stored, len(answers))
	if unknown > 0 {
		summary += fmt.Sprintf(" (%d more may or may not be: the broker did not answer)", unknown)
	}
	switch {
	case ctx.Err() != nil:
		if firstErr != nil && !errors.Is(firstErr, context.DeadlineExceeded) {
			return fmt.Errorf("%w: %s; line %d: %s", interruption(ctx), summary, firstErrLine, describe(firstErr))
		}
		return fmt.Errorf("%w: %s", interruption(ctx), summary)
	case firstErr != nil:
		return fmt.Errorf("%s; line %d: %s", summary, firstErrLine, describe(firstErr))
	case pubErr != nil:
		return fmt.Errorf("%s: %w", summary, pubErr)
	case closeErr != nil:
		return fmt.Errorf("%s: %w", summary, closeErr)
	}
	select {
	case err := <-readErr:
		if err != nil {
			return fmt.Errorf("read standard input: %w (%s)", err, summary)
		}
	default:
	}
	return nil
}

// outcomeUnknown reports whether a line that failed with err may have been
// stored all the same: the broker did not answer.
func outcomeUnknown(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch client.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}
