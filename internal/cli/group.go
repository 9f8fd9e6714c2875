package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newGroupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Create, list, show, reset and delete consumer groups"}
	var mode, ack, from string
	var ackTimeout time.Duration
	var retry []time.Duration
	var maxAttempts int
	create := &cobra.Command{
		Use:   "create TOPIC GROUP",
		Short: "Create a consumer group",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := client.GroupSpec{Topic: args[0], Name: args[1], AckTimeout: ackTimeout, RetryBackoff: retry, MaxAttempts: maxAttempts}
			switch mode {
			case "cluster":
				spec.Mode = client.Cluster
			case "broadcast":
				spec.Mode = client.Broadcast
			default:
				return fmt.Errorf("--mode %q: want cluster or broadcast", mode)
			}
			switch ack {
			case "business":
				spec.AckMode = client.BusinessAck
			case "auto":
				spec.AckMode = client.AutoAck
			default:
				return fmt.Errorf("--ack %q: want business or auto", ack)
			}
			switch from {
			case "latest":
			case "earliest":
				spec.FromEarliest = true
			default:
				return fmt.Errorf("--from %q: want earliest or latest", from)
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			g, err := c.CreateGroup(ctx, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "created group %s on %s (%s, %s ack, starts at %d)\n", g.Name, g.Topic, modeName(g.Mode), ackName(g.AckMode), g.StartOffset)
			return nil
		},
	}
	create.Flags().StringVar(&mode, "mode", "cluster", "cluster (each message to one member) or broadcast (to every member)")
	create.Flags().StringVar(&ack, "ack", "business", "business (ack after processing) or auto (acked when sent)")
	create.Flags().StringVar(&from, "from", "latest", "where the group starts: latest (end of the topic) or earliest")
	create.Flags().DurationVar(&ackTimeout, "ack-timeout", 0, "redeliver unacked messages after this long (default: the broker's)")
	create.Flags().DurationSliceVar(&retry, "retry", nil, "wait before each redelivery of a nacked message, e.g. 1s,5s,30s (the last repeats; default 1s,5s,10s,30s,1m,2m,...,2h)")
	create.Flags().IntVar(&maxAttempts, "max-attempts", 0, "deliveries before a failing message goes to the dead letters (default 16)")

	list := &cobra.Command{
		Use:   "list TOPIC",
		Short: "List the groups of a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			gs, err := c.ListGroups(ctx, args[0])
			if err != nil {
				return err
			}
			printGroups(e, gs)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get TOPIC GROUP",
		Short: "Show one group",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			g, err := c.GetGroup(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			printGroups(e, []*dmqv1.Group{g})
			return nil
		},
	}
	var to string
	reset := &cobra.Command{
		Use:   "reset TOPIC GROUP --to earliest|latest|TIME",
		Short: "Move a group's position: replay from the oldest message or a time, or skip to the end",
		Long: `Move a group's position. --to earliest replays every stored message, --to latest
skips everything stored, and --to TIME (RFC 3339, e.g. 2026-12-01T08:00:00+08:00)
replays the messages published at or after TIME.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var target client.ResetTo
			switch to {
			case "earliest":
				target.Earliest = true
			case "latest":
				target.Latest = true
			case "":
				return fmt.Errorf("--to is required: earliest, latest or an RFC 3339 time")
			default:
				ts, err := time.Parse(time.RFC3339, to)
				if err != nil {
					return fmt.Errorf("--to %q: want earliest, latest or an RFC 3339 time such as 2026-12-01T08:00:00+08:00", to)
				}
				target.Time = ts
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			g, err := c.ResetGroup(ctx, args[0], args[1], target)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "reset group %s of %s to offset %d (backlog %d)\n", g.Name, g.Topic, g.Stats.GetAckFloor(), g.Stats.GetBacklog())
			return nil
		},
	}
	reset.Flags().StringVar(&to, "to", "", "earliest, latest or an RFC 3339 time")
	del := &cobra.Command{
		Use:   "delete TOPIC GROUP",
		Short: "Delete a group with its position and dead letters",
		Long: `Delete a group with its position, acks and dead letters. Its consumers end
with NotFound, and the messages only it had not acked become subject to
retention. A group created again under the name starts afresh. Groups without
members that hold old messages back are marked abandoned in dmq group list.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := c.DeleteGroup(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted group %s of %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, get, reset, del)
	return cmd
}

func modeName(m dmqv1.GroupMode) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "GROUP_MODE_"))
}

func ackName(m dmqv1.AckMode) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "ACK_MODE_"))
}

func printGroups(e *env, gs []*dmqv1.Group) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tGROUP\tMODE\tACK\tACK-TIMEOUT\tMAX-ATTEMPTS\tACK-FLOOR\tBACKLOG\tIN-FLIGHT\tDEAD\tMEMBERS\tNOTE")
	for _, g := range gs {
		st := g.Stats
		note := ""
		if st.GetAbandoned() {
			note = "abandoned: no members, oldest unacked " + (time.Duration(st.GetOldestUnackedAgeMs()) * time.Millisecond).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", g.Topic, g.Name, modeName(g.Mode), ackName(g.AckMode),
			time.Duration(g.AckTimeoutMs)*time.Millisecond, g.MaxAttempts, st.GetAckFloor(), st.GetBacklog(), st.GetInFlight(), st.GetDeadLetters(), st.GetMembersOnline(), note)
	}
	w.Flush()
}
