package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newUserCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Console users and their roles (administrators)",
		Long: `People log in to the web console and the admin HTTP API with a user name and
a password when the broker runs with --auth. Roles:

  admin    everything: approvals, users, tokens, the audit log
  owner    registers and manages the topics of a department (env.DEPT.*), sees all
  viewer   sees everything, changes nothing

The broker keeps a bcrypt hash of each password (at least 8 characters).`,
	}
	var role, dept string
	var admin, passwordStdin bool
	add := &cobra.Command{
		Use:   "add NAME --role admin|owner|viewer [--dept DEPT] [--password-stdin]",
		Short: "Add a user; the password is prompted for, or read from stdin",
		Example: `  dmq user add root --admin
  dmq user add alice --role owner --dept shop
  echo "$PASSWORD" | dmq user add audit --role viewer --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if admin {
				if role != "" && role != "admin" {
					return fmt.Errorf("--admin and --role %s contradict each other", role)
				}
				role = "admin"
			}
			if role == "" {
				return errors.New("say the user's role: --role admin|owner|viewer (or --admin)")
			}
			password, err := e.readPassword(passwordStdin)
			if err != nil {
				return err
			}
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			u, err := c.API().CreateUser(ctx, &dmqv1.CreateUserRequest{Name: args[0], Role: role, Department: dept, Password: password})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added user %s (%s)\n", u.Name, describeRole(u))
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "", "admin, owner or viewer")
	add.Flags().StringVar(&dept, "dept", "", "the department an owner manages (topics env.DEPT.*)")
	add.Flags().BoolVar(&admin, "admin", false, "an administrator (same as --role admin)")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin instead of prompting")

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a user; their console sessions end at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if _, err := c.API().DeleteUser(ctx, &dmqv1.DeleteUserRequest{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted user %s\n", args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List users and their roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := e.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.API().ListUsers(ctx, &dmqv1.ListUsersRequest{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tROLE\tDEPARTMENT\tCREATED\tBY")
			for _, u := range resp.Users {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, orDash(u.Department),
					time.UnixMilli(u.CreatedAtMs).UTC().Format(time.RFC3339), u.CreatedBy)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(add, del, list)
	return cmd
}

// readPassword reads a new user's password: the first line of stdin with
// --password-stdin, else typed twice at the terminal without echo. A
// password is never taken from a flag, where ps and shell history would
// show it.
func (e *env) readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password from stdin: %w", err)
		}
		p := strings.TrimRight(line, "\r\n")
		if p == "" {
			return "", errors.New("--password-stdin: stdin has no password")
		}
		return p, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("stdin is not a terminal to prompt for the password: pass it with --password-stdin")
	}
	fd := int(f.Fd())
	fmt.Fprint(e.stderr, "Password: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	fmt.Fprint(e.stderr, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	if string(p) != string(again) {
		return "", errors.New("the two passwords differ")
	}
	return string(p), nil
}

// describeRole says what a user may do, in a few words.
func describeRole(u *dmqv1.User) string {
	if u.Role == "owner" {
		return "owner of " + u.Department
	}
	return u.Role
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
