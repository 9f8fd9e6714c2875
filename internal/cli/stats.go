package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newStatsCmd(e *env) *cobra.Command {
	var day, from, to, server, clientID string
	var all bool
	cmd := &cobra.Command{
		Use:   "stats TOPIC [--day YYYY-MM-DD | --from TIME --to TIME] [--server S] [--client C]",
		Short: "Per-minute produced, consumed and failed counts of a topic, with total, max and min",
		Long: `Per-minute counters of a topic over a day (UTC; default today) or a time
range, optionally narrowed to one server or one client id. Prints each minute
with activity (all minutes with --all) and, per counter, its total, max and min
over the range.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := client.StatsQuery{Server: server, Client: clientID}
			switch {
			case from != "" || to != "":
				var err error
				if q.From, err = time.Parse(time.RFC3339, from); err != nil {
					return fmt.Errorf("--from %q: want an RFC 3339 time", from)
				}
				if q.To, err = time.Parse(time.RFC3339, to); err != nil {
					return fmt.Errorf("--to %q: want an RFC 3339 time", to)
				}
			default:
				d := time.Now().UTC().Truncate(24 * time.Hour)
				if day != "" {
					var err error
					if d, err = time.Parse("2006-01-02", day); err != nil {
						return fmt.Errorf("--day %q: want YYYY-MM-DD", day)
					}
				}
				q.From, q.To = d, d.Add(24*time.Hour)
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			st, err := c.TopicStats(ctx, args[0], q)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "MINUTE\tPRODUCED\tCONSUMED\tFAILURES\tSTORED")
			for _, m := range st.Minutes {
				if !all && m.Produced == 0 && m.Consumed == 0 && m.Failures == 0 {
					continue
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", time.UnixMilli(m.MinuteMs).UTC().Format("2006-01-02 15:04"), m.Produced, m.Consumed, m.Failures, m.Stored)
			}
			w.Flush()
			fmt.Fprintf(e.stdout, "\n%d minutes from %s to %s; stored now %d\n", len(st.Minutes),
				q.From.UTC().Format(time.RFC3339), q.To.UTC().Format(time.RFC3339), st.StoredNow)
			w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "\tTOTAL\tMAX PER MINUTE\tMIN PER MINUTE")
			fmt.Fprintf(w, "produced\t%d\t%d\t%d\n", st.Produced.Total, st.Produced.Max, st.Produced.Min)
			fmt.Fprintf(w, "consumed\t%d\t%d\t%d\n", st.Consumed.Total, st.Consumed.Max, st.Consumed.Min)
			fmt.Fprintf(w, "failures\t%d\t%d\t%d\n", st.Failures.Total, st.Failures.Max, st.Failures.Min)
			if err := w.Flush(); err != nil {
				return err
			}
			if len(st.Groups) == 0 {
				return nil
			}
			fmt.Fprintln(e.stdout)
			w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "GROUP\tBACKLOG LAST\tBACKLOG MAX\tBACKLOG MIN\tOLDEST UNACKED LAST\tOLDEST UNACKED MAX")
			for _, g := range st.Groups {
				var now *dmqv1.GroupMinute
				if n := len(g.Minutes); n > 0 {
					now = g.Minutes[n-1]
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\n", g.Group, now.GetBacklog(), g.Backlog.GetMax(), g.Backlog.GetMin(),
					time.Duration(now.GetOldestUnackedAgeMs())*time.Millisecond, time.Duration(g.OldestUnackedAgeMs.GetMax())*time.Millisecond)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&day, "day", "", "a UTC day, YYYY-MM-DD (default today)")
	f.StringVar(&from, "from", "", "range start, RFC 3339")
	f.StringVar(&to, "to", "", "range end, RFC 3339")
	f.StringVar(&server, "server", "", "only this server's counts")
	f.StringVar(&clientID, "client", "", "only this client id's counts")
	f.BoolVar(&all, "all", false, "print minutes without activity too")
	return cmd
}
