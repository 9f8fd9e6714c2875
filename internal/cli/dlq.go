package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newDLQCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List, show, redrive and purge a group's dead letters"}
	var limit int
	var after, key string
	list := &cobra.Command{
		Use:   "list TOPIC GROUP",
		Short: "List dead letters, oldest first",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			page, err := c.ListDeadLetters(ctx, args[0], args[1], after, limit, key)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tKEY\tATTEMPTS\tDEAD-AT\tLAST-FAILURE\tBODY")
			for _, d := range page.DeadLetters {
				m := d.Message
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", m.Id, m.Key, d.Attempts,
					time.UnixMilli(d.DeadAtMs).Format(time.RFC3339), d.LastFailure, preview(m.Body))
			}
			w.Flush()
			fmt.Fprintf(e.stdout, "%d shown, %d dead letters in group %s\n", len(page.DeadLetters), page.Total, args[1])
			return nil
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (up to 1000)")
	list.Flags().StringVar(&after, "after", "", "only ids after this one (paging)")
	list.Flags().StringVar(&key, "key", "", "only dead letters with this business key")

	show := &cobra.Command{
		Use:   "show TOPIC GROUP ID",
		Short: "Show one dead letter as JSON",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			d, err := c.GetDeadLetter(ctx, args[0], args[1], args[2])
			if err != nil {
				return err
			}
			return printDeadLetter(e, d)
		},
	}

	var ids []string
	var all bool
	selection := func(cmd *cobra.Command) {
		cmd.Flags().StringSliceVar(&ids, "id", nil, "dead letter ids (repeatable or comma-separated)")
		cmd.Flags().StringVar(&key, "key", "", "all dead letters with this business key")
		cmd.Flags().BoolVar(&all, "all", false, "all dead letters of the group")
	}
	act := func(verb string, do func(*client.Client, context.Context, string, string, client.DeadLetters) (int, error)) *cobra.Command {
		c := &cobra.Command{
			Use:   verb + " TOPIC GROUP (--id ID... | --key KEY | --all)",
			Args:  cobra.ExactArgs(2),
			Short: map[string]string{"redrive": "Hand dead letters back to the group for delivery", "purge": "Delete dead letters"}[verb],
			RunE: func(cmd *cobra.Command, args []string) error {
				n := 0
				for _, set := range []bool{len(ids) > 0, key != "", all} {
					if set {
						n++
					}
				}
				if n != 1 {
					return fmt.Errorf("choose the dead letters with exactly one of --id, --key or --all")
				}
				c, ctx, done, err := e.connect(cmd)
				if err != nil {
					return err
				}
				defer done()
				count, err := do(c, ctx, args[0], args[1], client.DeadLetters{IDs: ids, Key: key, All: all})
				if err != nil {
					return err
				}
				past := map[string]string{"redrive": "redriven", "purge": "purged"}[verb]
				fmt.Fprintf(e.stdout, "%s %d dead letters of group %s\n", past, count, args[1])
				return nil
			},
		}
		selection(c)
		return c
	}
	redrive := act("redrive", (*client.Client).RedriveDeadLetters)
	purge := act("purge", (*client.Client).PurgeDeadLetters)
	cmd.AddCommand(list, show, redrive, purge)
	return cmd
}

// preview shortens a body for a table cell.
func preview(b []byte) string {
	const n = 40
	s := string(b)
	if len([]rune(s)) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func printDeadLetter(e *env, d *dmqv1.DeadLetter) error {
	m := d.Message
	out := map[string]any{
		"id": m.Id, "topic": m.Topic, "group": d.Group, "key": m.Key, "headers": m.Headers,
		"body": string(m.Body), "attempts": d.Attempts, "last_failure": d.LastFailure,
		"dead_at": time.UnixMilli(d.DeadAtMs).UTC(), "published_at": time.UnixMilli(m.PublishedAtMs).UTC(),
		"client_message_id": m.ClientMessageId,
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
