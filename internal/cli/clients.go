package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
)

func newClientCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "List clients and remove offline ones"}
	var topic, group string
	var online, offline bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List clients known to the broker, online and offline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if online && offline {
				return fmt.Errorf("--online and --offline exclude each other")
			}
			f := client.ClientFilter{Topic: topic, Group: group}
			if online || offline {
				f.Online = &online
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			cs, err := c.ListClients(ctx, f)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CLIENT\tSTATE\tHOST\tADDRESS\tSDK\tROLES\tPRODUCES\tCONSUMES\tCONNECTED-SINCE\tLAST-SEEN")
			for _, ci := range cs {
				state := "offline"
				if ci.Online {
					state = "online"
				}
				var subs []string
				for _, s := range ci.Consumes {
					subs = append(subs, s.Topic+"/"+s.Group)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ci.ClientId, state, ci.Host, ci.Address, ci.SdkVersion,
					strings.Join(ci.Roles, ","), strings.Join(ci.Produces, ","), strings.Join(subs, ","),
					time.UnixMilli(ci.ConnectedSinceMs).Format(time.RFC3339), time.UnixMilli(ci.LastSeenMs).Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&topic, "topic", "", "only clients of this topic")
	list.Flags().StringVar(&group, "group", "", "only consumers of this group (with --topic)")
	list.Flags().BoolVar(&online, "online", false, "only online clients")
	list.Flags().BoolVar(&offline, "offline", false, "only offline clients")

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Remove an offline client from the registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := c.DeleteClient(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted client %s\n", args[0])
			return nil
		},
	}
	delOffline := &cobra.Command{
		Use:   "delete-offline",
		Short: "Remove every offline client from the registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			n, err := c.DeleteOfflineClients(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %d offline clients\n", n)
			return nil
		},
	}
	cmd.AddCommand(list, del, delOffline)
	return cmd
}
