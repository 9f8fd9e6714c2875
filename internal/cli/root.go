// Package cli implements the dmq command line: one file per subcommand.
// Flags, the config file and DMQ_* variables are parsed here and in
// internal/config; other packages receive plain structs.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

// Version is the dmq version, set at build time with -ldflags "-X".
var Version = "0.1.0-dev"

// env carries the process environment into commands, so tests can run them
// in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	server         string
	timeout        time.Duration
	// Credentials: a token and TLS files (see security.go).
	token                  string
	tlsCA, tlsCert, tlsKey string
}

// Main runs the dmq command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "dmq:", describe(err))
		return exitCode(err) // 1, or 130 and 143 for pub and sub stopped by a signal
	}
	return 0
}

// describe renders an error for a person: gRPC statuses as "Code: message".
func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "dmq",
		Short:         "DMQ: a durable distributed message queue (broker and client)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("DMQ_SERVER")
	if def == "" {
		def = "127.0.0.1:7420"
	}
	root.PersistentFlags().StringVar(&e.server, "server", def, "broker gRPC address (env DMQ_SERVER)")
	root.PersistentFlags().DurationVar(&e.timeout, "timeout", 10*time.Second, "timeout of each request to the broker")
	root.PersistentFlags().StringVar(&e.token, "token", os.Getenv("DMQ_TOKEN"), "application token when the broker requires one (env DMQ_TOKEN)")
	root.PersistentFlags().StringVar(&e.tlsCA, "tls-ca", os.Getenv("DMQ_TLS_CA"), "connect over TLS, trusting this PEM CA (env DMQ_TLS_CA)")
	root.PersistentFlags().StringVar(&e.tlsCert, "tls-cert", os.Getenv("DMQ_TLS_CERT"), "client certificate (PEM) for mutual TLS (env DMQ_TLS_CERT)")
	root.PersistentFlags().StringVar(&e.tlsKey, "tls-key", os.Getenv("DMQ_TLS_KEY"), "private key (PEM) of --tls-cert (env DMQ_TLS_KEY)")
	root.AddCommand(
		newServerCmd(e),
		newVersionCmd(e),
		newTopicCmd(e),
		newGroupCmd(e),
		newPubCmd(e),
		newSubCmd(e),
		newBenchCmd(e),
		newDLQCmd(e),
		newDelayCmd(e),
		newClientCmd(e),
		newStatsCmd(e),
		newTraceCmd(e),
		newTokenCmd(e),
		newUserCmd(e),
		newAuditCmd(e),
		newClusterCmd(e),
	)
	refuseUnknownSubcommands(root)
	return root
}

func (e *env) dial() (*client.Client, error) {
	opts, err := e.dialOptions()
	if err != nil {
		return nil, err
	}
	return client.Dial(e.server, opts...)
}

func (e *env) rpcContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, e.timeout)
}

// connect dials the broker for one command and returns a context bounded by
// --timeout; done releases both.
func (e *env) connect(cmd *cobra.Command) (c *client.Client, ctx context.Context, done func(), err error) {
	if c, err = e.dial(); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := e.rpcContext(cmd.Context())
	return c, ctx, func() { cancel(); c.Close() }, nil
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the dmq version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "dmq %s (sdk %s)\n", Version, client.Version)
			return nil
		},
	}
}
