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
	cmd := &cobra.Command{Use: "group", Short: "Create, list and show consumer groups"}
	var mode, ack, from string
	var ackTimeout time.Duration
	create := &cobra.Command{
		Use:   "create TOPIC GROUP",
		Short: "Create a consumer group",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := client.GroupSpec{Topic: args[0], Name: args[1], AckTimeout: ackTimeout}
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
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
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

	list := &cobra.Command{
		Use:   "list TOPIC",
		Short: "List the groups of a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
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
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
			g, err := c.GetGroup(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			printGroups(e, []*dmqv1.Group{g})
			return nil
		},
	}
	cmd.AddCommand(create, list, get)
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
	fmt.Fprintln(w, "TOPIC\tGROUP\tMODE\tACK\tACK-TIMEOUT\tACK-FLOOR\tBACKLOG\tIN-FLIGHT\tMEMBERS")
	for _, g := range gs {
		st := g.Stats
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", g.Topic, g.Name, modeName(g.Mode), ackName(g.AckMode),
			time.Duration(g.AckTimeoutMs)*time.Millisecond, st.GetAckFloor(), st.GetBacklog(), st.GetInFlight(), st.GetMembersOnline())
	}
	w.Flush()
}
