package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/spf13/cobra"
)

func newTraceCmd(e *env) *cobra.Command {
	var topic, key, from, to string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "trace [ID] --topic T | trace --topic T --key K [--since 24h | --from TIME --to TIME]",
		Short: "Show where a message went: published, delivered, acked, failed...",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return fmt.Errorf("--topic is required")
			}
			if (len(args) == 1) == (key != "") {
				return fmt.Errorf("give a message id, or --key to search by business key")
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if len(args) == 1 {
				tr, err := c.Trace(ctx, topic, args[0])
				if err != nil {
					return err
				}
				printTrace(e, tr)
				return nil
			}
			end, start := time.Now().Add(time.Second), time.Now().Add(-since)
			if from != "" || to != "" {
				if start, err = time.Parse(time.RFC3339, from); err != nil {
					return fmt.Errorf("--from %q: want an RFC 3339 time", from)
				}
				if end, err = time.Parse(time.RFC3339, to); err != nil {
					return fmt.Errorf("--to %q: want an RFC 3339 time", to)
				}
			}
			trs, err := c.SearchTrace(ctx, topic, key, start, end, 20)
			if err != nil {
				return err
			}
			if len(trs) == 0 {
				fmt.Fprintf(e.stdout, "no message with key %q in %s between %s and %s\n", key, topic, start.Format(time.RFC3339), end.Format(time.RFC3339))
			}
			for _, tr := range trs {
				printTrace(e, tr)
				fmt.Fprintln(e.stdout)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "the message's topic (required)")
	f.StringVar(&key, "key", "", "search by business key")
	f.DurationVar(&since, "since", 24*time.Hour, "with --key: search this far back")
	f.StringVar(&from, "from", "", "with --key: range start, RFC 3339")
	f.StringVar(&to, "to", "", "with --key: range end, RFC 3339")
	return cmd
}

func printTrace(e *env, tr *dmqv1.MessageTrace) {
	fmt.Fprintf(e.stdout, "message %s\n", tr.Id)
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tEVENT\tGROUP\tCLIENT\tATTEMPT\tDETAIL")
	for _, ev := range tr.Events {
		detail := ev.Reason
		if ev.Address != "" {
			detail = "from " + ev.Address
		}
		if ev.MessageId != "" {
			detail = "as message " + ev.MessageId
		}
		attempt := ""
		if ev.Attempt > 0 {
			attempt = fmt.Sprint(ev.Attempt)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", time.UnixMilli(ev.TimeMs).Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Group, ev.ClientId, attempt, detail)
	}
	w.Flush()
}
