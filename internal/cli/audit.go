package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/spf13/cobra"
)

func newAuditCmd(e *env) *cobra.Command {
	var from, to, who, action string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "audit [--from RFC3339] [--to RFC3339] [--who WHO] [--action ACTION] [--limit N]",
		Short: "Show the audit log of administrative actions, newest first (administrators)",
		Long: `The broker records who did what, when and from where: topic approvals,
rejections, deletions, group resets, dead-letter redrives and purges, cancelled
delayed messages, deleted clients, token and user changes, and failed logins.

WHO is "user:NAME" or "app:NAME"; ACTION one of topic.create, topic.approve,
topic.reject, topic.disable, topic.delete, group.reset, deadletters.redrive,
deadletters.purge, delayed.cancel, clients.delete, token.create, token.revoke,
user.create, user.delete, login.failed.`,
		Example: `  dmq audit --action topic.approve
  dmq audit --who user:alice --from 2026-11-26T00:00:00Z --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &dmqv1.ListAuditRequest{Who: who, Action: action, Limit: limit}
			var err error
			if req.FromMs, err = parseTimeFlag("--from", from); err != nil {
				return err
			}
			if req.ToMs, err = parseTimeFlag("--to", to); err != nil {
				return err
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.API().ListAudit(ctx, req)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tWHO\tACTION\tTARGET\tFROM\tDETAIL")
			for _, a := range resp.Entries {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", time.UnixMilli(a.TimeMs).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
					a.Who, a.Action, orDash(a.Target), orDash(a.From), a.Detail)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "entries at or after this time (RFC 3339)")
	cmd.Flags().StringVar(&to, "to", "", "entries before this time (RFC 3339)")
	cmd.Flags().StringVar(&who, "who", "", `only this actor ("user:alice", "app:ops")`)
	cmd.Flags().StringVar(&action, "action", "", "only this action (topic.approve, user.create, ...)")
	cmd.Flags().Uint32Var(&limit, "limit", 0, "at most this many entries (1 to 1000; default 100)")
	return cmd
}

// parseTimeFlag reads an RFC 3339 flag as Unix milliseconds; empty is 0.
func parseTimeFlag(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want RFC 3339, like 2026-11-26T08:00:00Z", name, v)
	}
	return t.UnixMilli(), nil
}
