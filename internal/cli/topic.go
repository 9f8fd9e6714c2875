package cli

import (
	"context"
	"fmt"
	"os"
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
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			spec.Name = args[0]
			t, err := c.CreateTopic(ctx, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "created topic %s (%s)\n", t.Name, t.Status)
			return nil
		},
	}
	create.Flags().StringVar(&spec.Department, "dept", "", "owning department")
	create.Flags().StringVar(&spec.Owner, "owner", "", "owner (person or team)")
	create.Flags().StringVar(&spec.Purpose, "purpose", "", "what the topic is for")
	create.Flags().DurationVar(&spec.DedupeWindow, "dedupe-window", 0, "how long retransmitted duplicates are detected (default: the broker's, 2m)")
	create.Flags().StringVar(&spec.RequestedBy, "requested-by", currentUser(), "who asks for the topic")

	var filter client.TopicFilter
	list := &cobra.Command{
		Use:   "list",
		Short: "List topics (filter by department, owner, environment, status, name)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			ts, err := c.ListTopics(ctx, filter)
			if err != nil {
				return err
			}
			printTopics(e, ts)
			return nil
		},
	}
	list.Flags().StringVar(&filter.Department, "dept", "", "only this department")
	list.Flags().StringVar(&filter.Owner, "owner", "", "only this owner")
	list.Flags().StringVar(&filter.Environment, "env", "", "only this environment (dev, test, prod...)")
	list.Flags().StringVar(&filter.Status, "status", "", "only this status: pending, approved, rejected or disabled")
	list.Flags().StringVar(&filter.NameContains, "name", "", "only names containing this")
	get := &cobra.Command{
		Use:     "show NAME",
		Aliases: []string{"get"},
		Short:   "Show one topic",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			t, err := c.GetTopic(ctx, args[0])
			if err != nil {
				return err
			}
			printTopic(e, t)
			return nil
		},
	}
	var by, reason string
	decide := func(verb, short string, call func(*client.Client, context.Context, string, string, string) (*dmqv1.Topic, error)) *cobra.Command {
		c := &cobra.Command{
			Use:   verb + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, ctx, done, err := e.connect(cmd)
				if err != nil {
					return err
				}
				defer done()
				t, err := call(c, ctx, args[0], by, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "topic %s is %s (by %s)\n", t.Name, t.Status, t.DecidedBy)
				return nil
			},
		}
		c.Flags().StringVar(&by, "by", currentUser(), "who decides")
		c.Flags().StringVar(&reason, "reason", "", "why")
		return c
	}
	approve := decide("approve", "Approve a topic so it can be used", (*client.Client).ApproveTopic)
	reject := decide("reject", "Reject a pending topic", (*client.Client).RejectTopic)
	disable := decide("disable", "Disable an approved topic (publish and subscribe stop; messages stay)", (*client.Client).DisableTopic)
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic with its groups and messages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := c.DeleteTopic(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, get, approve, reject, disable, del)
	return cmd
}

func printTopics(e *env, ts []*dmqv1.Topic) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tENV\tSTATUS\tDEPT\tOWNER\tMESSAGES\tFIRST\tNEXT\tBYTES\tDELAYED\tCREATED\tPURPOSE")
	for _, t := range ts {
		st := t.Stats
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", t.Name, t.Environment, t.Status, t.Department, t.Owner,
			st.GetNextOffset()-st.GetFirstOffset(), st.GetFirstOffset(), st.GetNextOffset(), st.GetStoredBytes(), st.GetDelayedPending(),
			time.UnixMilli(t.CreatedAtMs).Format(time.RFC3339), t.Purpose)
	}
	w.Flush()
}

// printTopic shows one topic with its registry record.
func printTopic(e *env, t *dmqv1.Topic) {
	printTopics(e, []*dmqv1.Topic{t})
	fmt.Fprintf(e.stdout, "\nrequested by %q; %s", t.RequestedBy, t.Status)
	if t.DecidedBy != "" {
		fmt.Fprintf(e.stdout, " by %q at %s", t.DecidedBy, time.UnixMilli(t.DecidedAtMs).Format(time.RFC3339))
		if t.DecisionReason != "" {
			fmt.Fprintf(e.stdout, " (%s)", t.DecisionReason)
		}
	}
	fmt.Fprintln(e.stdout)
}

// currentUser is the default name for registry requests and decisions
// until authentication names the caller.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
