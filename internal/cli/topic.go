package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newTopicCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "Create, list, show and delete topics"}
	var spec client.TopicSpec
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic (name: env.dept.name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
			spec.Name = args[0]
			t, err := c.CreateTopic(ctx, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "created topic %s\n", t.Name)
			return nil
		},
	}
	create.Flags().StringVar(&spec.Department, "dept", "", "owning department")
	create.Flags().StringVar(&spec.Owner, "owner", "", "owner (person or team)")
	create.Flags().StringVar(&spec.Purpose, "purpose", "", "what the topic is for")
	create.Flags().DurationVar(&spec.DedupeWindow, "dedupe-window", 0, "how long retransmitted duplicates are detected (default: the broker's, 2m)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
			ts, err := c.ListTopics(ctx)
			if err != nil {
				return err
			}
			printTopics(e, ts)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
			t, err := c.GetTopic(ctx, args[0])
			if err != nil {
				return err
			}
			printTopics(e, []*dmqv1.Topic{t})
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic with its groups and messages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.rpcContext(cmd.Context())
			defer cancel()
			if err := c.DeleteTopic(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, get, del)
	return cmd
}

func printTopics(e *env, ts []*dmqv1.Topic) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tDEPT\tOWNER\tMESSAGES\tFIRST\tNEXT\tBYTES\tDELAYED\tCREATED\tPURPOSE")
	for _, t := range ts {
		st := t.Stats
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", t.Name, t.Department, t.Owner,
			st.GetNextOffset()-st.GetFirstOffset(), st.GetFirstOffset(), st.GetNextOffset(), st.GetStoredBytes(), st.GetDelayedPending(),
			time.UnixMilli(t.CreatedAtMs).Format(time.RFC3339), t.Purpose)
	}
	w.Flush()
}
