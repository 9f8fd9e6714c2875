package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newDelayCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "delay", Short: "List and cancel pending delayed messages"}
	var from, to, key, after string
	var limit int
	list := &cobra.Command{
		Use:   "list TOPIC",
		Short: "List pending delayed messages, soonest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := client.DelayedFilter{Key: key, AfterID: after, Limit: limit}
			for _, p := range []struct {
				flag, v string
				dst     *time.Time
			}{{"--from", from, &f.From}, {"--to", to, &f.To}} {
				if p.v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, p.v)
				if err != nil {
					return fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-12-01T08:00:00+08:00", p.flag, p.v)
				}
				*p.dst = t
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			page, err := c.ListDelayed(ctx, args[0], f)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tDUE\tKEY\tBODY")
			for _, d := range page.Messages {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Id, time.UnixMilli(d.DueMs).Format(time.RFC3339Nano), d.Message.Key, preview(d.Message.Body))
			}
			w.Flush()
			next := "none"
			if !page.NextDue.IsZero() {
				next = page.NextDue.Format(time.RFC3339Nano)
			}
			fmt.Fprintf(e.stdout, "%d shown, %d pending in %s, next due %s\n", len(page.Messages), page.Total, args[0], next)
			return nil
		},
	}
	list.Flags().StringVar(&from, "from", "", "only messages due at or after this RFC 3339 time")
	list.Flags().StringVar(&to, "to", "", "only messages due before this RFC 3339 time")
	list.Flags().StringVar(&key, "key", "", "only messages with this business key")
	list.Flags().StringVar(&after, "after", "", "only ids after this one (paging)")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (up to 1000)")

	cancelCmd := &cobra.Command{
		Use:   "cancel TOPIC ID",
		Short: "Cancel a pending delayed message (it is never delivered)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := c.CancelDelayed(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "cancelled %s\n", args[1])
			return nil
		},
	}
	cmd.AddCommand(list, cancelCmd)
	return cmd
}
