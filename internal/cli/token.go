package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/spf13/cobra"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Application tokens and what they allow (administrators)",
		Long: `Each application authenticates with its own token when the broker runs with
--auth. A token allows actions on topic patterns: publish, subscribe (optionally
only with named groups) and manage (register topics, manage their groups, dead
letters and delayed messages). Administrators may do everything, including
approving topics and managing tokens. The broker stores only a hash of each token:
the token is printed once, by create.

Patterns are topic names whose segments may be '*' (any one segment; a last '*'
matches the rest): prod.suyun.*  test.*.orders  *`,
	}
	var admin bool
	var publish, subscribe, manage []string
	create := &cobra.Command{
		Use:   "create APP [--publish PATTERN]... [--subscribe PATTERN[:GROUP,GROUP]]... [--manage PATTERN]... [--admin]",
		Short: "Create an application's token and print it (once)",
		Example: `  dmq token create shop-api --publish 'prod.shop.*'
  dmq token create billing --subscribe 'prod.shop.orders:billing'
  dmq token create shop-team --manage 'prod.shop.*'
  dmq token create ops --admin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmqv1.CreateTokenRequest{App: args[0], Admin: admin}
			for _, p := range publish {
				req.Grants = append(req.Grants, &dmqv1.TokenGrant{Pattern: p, Publish: true})
			}
			for _, p := range subscribe {
				g := &dmqv1.TokenGrant{Pattern: p, Subscribe: true}
				if pattern, groups, ok := strings.Cut(p, ":"); ok {
					g.Pattern, g.Groups = pattern, strings.Split(groups, ",")
				}
				req.Grants = append(req.Grants, g)
			}
			for _, p := range manage {
				req.Grants = append(req.Grants, &dmqv1.TokenGrant{Pattern: p, Manage: true})
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.API().CreateToken(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, resp.Token)
			fmt.Fprintf(e.stderr, "token of %s (shown only now; the broker keeps a hash): %s\n", resp.App.Name, describeApp(resp.App))
			return nil
		},
	}
	create.Flags().BoolVar(&admin, "admin", false, "an administrator: everything, including approvals and tokens")
	create.Flags().StringArrayVar(&publish, "publish", nil, "may publish to topics matching the pattern")
	create.Flags().StringArrayVar(&subscribe, "subscribe", nil, "may subscribe to topics matching PATTERN, only with GROUPs if given (PATTERN:GROUP,GROUP)")
	create.Flags().StringArrayVar(&manage, "manage", nil, "may register and manage topics matching the pattern")

	revoke := &cobra.Command{
		Use:   "revoke APP",
		Short: "Revoke an application's token: its calls and open streams fail at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if _, err := c.API().RevokeToken(ctx, &dmqv1.RevokeTokenRequest{App: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked the token of %s\n", args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List applications and what their tokens allow",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.API().ListTokens(ctx, &dmqv1.ListTokensRequest{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "APP\tTOKEN\tALLOWS\tCREATED\tBY")
			for _, a := range resp.Apps {
				fmt.Fprintf(w, "%s\t%s…\t%s\t%s\t%s\n", a.Name, a.TokenPrefix, describeApp(a),
					time.UnixMilli(a.CreatedAtMs).UTC().Format(time.RFC3339), a.CreatedBy)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(create, revoke, list)
	return cmd
}

// describeApp says what an application may do, in one line.
func describeApp(a *dmqv1.Application) string {
	if a.Admin {
		return "administrator"
	}
	var parts []string
	for _, g := range a.Grants {
		var acts []string
		if g.Publish {
			acts = append(acts, "publish")
		}
		if g.Subscribe {
			s := "subscribe"
			if len(g.Groups) > 0 {
				s += "(" + strings.Join(g.Groups, ",") + ")"
			}
			acts = append(acts, s)
		}
		if g.Manage {
			acts = append(acts, "manage")
		}
		parts = append(parts, g.Pattern+": "+strings.Join(acts, "+"))
	}
	return strings.Join(parts, "; ")
}
