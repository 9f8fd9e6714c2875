package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dmqio/dmq/internal/server"
)

// The cluster commands speak to the nodes' HTTP API (GET /api/v1/cluster, and on the
// leader the membership endpoints, which followers redirect to): every node answers
// status, leader or not, which the gRPC API does not.

type clusterFlags struct {
	http []string
}

func newClusterCmd(e *env) *cobra.Command {
	f := &clusterFlags{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change a cluster: status, add-node, remove-node, transfer-leader",
	}
	def := strings.Split(envOr("DMQ_HTTP", "127.0.0.1:7480"), ",")
	cmd.PersistentFlags().StringSliceVar(&f.http, "http", def, "HTTP addresses of the nodes to ask (comma-separated; env DMQ_HTTP)")
	cmd.AddCommand(newClusterStatusCmd(e, f), newClusterAddCmd(e, f), newClusterRemoveCmd(e, f), newClusterTransferCmd(e, f))
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newClusterStatusCmd(e *env, f *clusterFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Each node's role, term, log positions and lag behind the leader",
		Long: `Asks every node named by --http for its view of the cluster and prints one
line per node: role, Raft state and term, last log, commit and applied index,
and its lag (the leader's commit index minus the node's applied index). A node
that does not answer is listed as unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hc, scheme, err := e.httpClient()
			if err != nil {
				return err
			}
			type row struct {
				addr string
				st   server.Status
				err  error
			}
			var rows []row
			var leaderCommit uint64
			var leader string
			for _, addr := range f.http {
				var st server.Status
				err := e.clusterCall(cmd.Context(), hc, http.MethodGet, scheme+"://"+addr+"/api/v1/cluster", nil, &st)
				rows = append(rows, row{addr, st, err})
				if err == nil && st.Role == "leader" && len(st.Groups) > 0 {
					leaderCommit, leader = st.Groups[0].CommitIndex, st.NodeID
				}
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tHTTP\tROLE\tSTATE\tTERM\tLAST LOG\tCOMMIT\tAPPLIED\tLAG\tLEADER")
			reachable := 0
			for _, r := range rows {
				if r.err != nil {
					fmt.Fprintf(w, "?\t%s\tunreachable\t-\t-\t-\t-\t-\t-\t%v\n", r.addr, r.err)
					continue
				}
				reachable++
				for _, g := range r.st.Groups {
					lag := "-"
					if leader != "" && leaderCommit >= g.AppliedIndex {
						lag = fmt.Sprint(leaderCommit - g.AppliedIndex)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.st.NodeID, r.addr, r.st.Role, g.State, g.Term, g.LastLogIndex, g.CommitIndex, g.AppliedIndex, lag, r.st.Leader.ID)
				}
			}
			w.Flush()
			for _, r := range rows {
				if r.err == nil && r.st.ReplicaError != "" {
					fmt.Fprintf(e.stdout, "%s cannot apply the log and will not lead until replaced: %s\n", r.st.NodeID, r.st.ReplicaError)
				}
			}
			if reachable > 0 {
				st := rows[0].st
				for _, r := range rows {
					if r.err == nil {
						st = r.st
						break
					}
				}
				if len(st.Groups) > 0 {
					var members []string
					for _, s := range st.Groups[0].Servers {
						members = append(members, s.ID+"="+s.Addr)
					}
					fmt.Fprintf(e.stdout, "members: %s\n", strings.Join(members, ", "))
				}
			}
			if reachable == 0 {
				return errors.New("no node answered")
			}
			if leader == "" {
				fmt.Fprintln(e.stdout, "no leader among the nodes asked (an election in progress, or the leader was not asked)")
			}
			return nil
		},
	}
}

func newClusterAddCmd(e *env, f *clusterFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "add-node ID CLUSTER-ADDR",
		Short: "Add a node started with --join as a voter (it catches up from a snapshot)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{"id": args[0], "addr": args[1]}
			if err := e.clusterChange(cmd.Context(), f, http.MethodPost, "/api/v1/cluster/nodes", body); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "node %s added at %s\n", args[0], args[1])
			return nil
		},
	}
}

func newClusterRemoveCmd(e *env, f *clusterFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node ID",
		Short: "Remove a node from the cluster (a dead one, before replacing it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.clusterChange(cmd.Context(), f, http.MethodDelete, "/api/v1/cluster/nodes/"+args[0], nil); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "node %s removed\n", args[0])
			return nil
		},
	}
}

func newClusterTransferCmd(e *env, f *clusterFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand leadership to a node (default: the most up-to-date one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			to := ""
			if len(args) == 1 {
				to = args[0]
			}
			if err := e.clusterChange(cmd.Context(), f, http.MethodPost, "/api/v1/cluster/leader", map[string]string{"to": to}); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "leadership transferred")
			return nil
		},
	}
}

// clusterChange sends a membership change to the first node that answers; a follower
// redirects it to the leader.
func (e *env) clusterChange(ctx context.Context, f *clusterFlags, method, path string, body any) error {
	hc, scheme, err := e.httpClient()
	if err != nil {
		return err
	}
	hc.Timeout = 0 // a new voter may take a while to catch up
	var errs []error
	for _, addr := range f.http {
		err := e.clusterCall(ctx, hc, method, scheme+"://"+addr+path, body, nil)
		if err == nil {
			return nil
		}
		var he *httpError
		if errors.As(err, &he) && he.code != http.StatusServiceUnavailable {
			return err // the leader refused: another node would say the same
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return errors.Join(errs...)
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.code, http.StatusText(e.code), e.msg)
}

// clusterCall sends one request with the token and decodes the answer into out.
func (e *env) clusterCall(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	var rd io.Reader
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &msg) != nil || msg.Error == "" {
			msg.Error = strings.TrimSpace(string(raw))
		}
		return &httpError{code: resp.StatusCode, msg: msg.Error}
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// httpClient is a client for the nodes' HTTP API, over TLS with the --tls-* flags. Redirects
// keep the Authorization header (they go from a follower to the leader of the same
// cluster).
func (e *env) httpClient() (*http.Client, string, error) {
	hc := &http.Client{Timeout: e.timeout}
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		if auth := via[0].Header.Get("Authorization"); auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return nil
	}
	tc, err := e.tlsConfig()
	if err != nil {
		return nil, "", err
	}
	if tc == nil {
		return hc, "http", nil
	}
	hc.Transport = &http.Transport{TLSClientConfig: tc}
	return hc, "https", nil
}
