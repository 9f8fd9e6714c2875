package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dmqio/dmq/internal/cluster"
	"github.com/dmqio/dmq/internal/server"
	"github.com/dmqio/dmq/internal/shard"
)

// The cluster commands speak to the nodes' HTTP API (GET /api/v1/cluster, and on the
// leader the membership endpoints, to which other nodes redirect or pass requests on):
// every node answers status, leader or not, which the gRPC API does not.

type clusterFlags struct {
	http []string
}

func newClusterCmd(e *env) *cobra.Command {
	f := &clusterFlags{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change a cluster: status, add-node, remove-node, transfer-leader, set-replicas",
	}
	def := strings.Split(envOr("DMQ_HTTP", "127.0.0.1:7480"), ",")
	cmd.PersistentFlags().StringSliceVar(&f.http, "http", def, "HTTP addresses of the nodes to ask (comma-separated; env DMQ_HTTP)")
	cmd.AddCommand(newClusterStatusCmd(e, f), newClusterAddCmd(e, f), newClusterRemoveCmd(e, f), newClusterTransferCmd(e, f), newClusterReplicasCmd(e, f))
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
		Short: "Each node's role, term, log positions and lag behind the leader, for every shard",
		Long: `Asks every node named by --http for its view of the cluster and prints one
line per node and shard: the node's role in the shard, Raft state and term, last
log, commit and applied index, its lag (the shard leader's commit index minus the
node's applied index) and the shard's leader. A node that does not answer is
listed as unreachable. With one shard the SHARD column is left out; with several,
a line per shard names its leader.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hc, scheme, err := e.httpClient()
			if err != nil {
				return err
			}
			var views []nodeView
			for _, addr := range f.http {
				var st server.Status
				err := e.clusterCall(cmd.Context(), hc, http.MethodGet, scheme+"://"+addr+"/api/v1/cluster", nil, &st)
				views = append(views, nodeView{addr, st, err})
			}
			return printClusterStatus(e.stdout, views)
		},
	}
}

// nodeView is one node's answer to GET /api/v1/cluster, or why there is none.
type nodeView struct {
	addr string
	st   server.Status
	err  error
}

// printClusterStatus writes the status table, one row per node and shard (node by
// node, in the order asked), and below it what the rows add up to: each shard's
// leader, broken replicas, the members.
//
// NB: the test in test/cluster counts " leader " and " follower " in this output for
// a cluster of one shard; only the ROLE column may hold those words with spaces
// around them.
func printClusterStatus(out io.Writer, views []nodeView) error {
	// A shard's leader is the node that says it serves the shard: the others' lag is
	// measured against its commit index.
	type served struct {
		node   string
		commit uint64
	}
	leaders := map[string]served{}
	var shards []string // in the order the nodes list them (s0, s1, ...)
	elected := map[string]string{}
	var first *server.Status // the first answer, for the members
	sharded := false
	for i, v := range views {
		if v.err != nil {
			continue
		}
		if first == nil {
			first = &views[i].st
		}
		sharded = sharded || len(v.st.Groups) > 1 || v.st.Shards > 1
		for _, g := range v.st.Groups {
			if !slices.Contains(shards, g.Name) {
				shards = append(shards, g.Name)
			}
			if g.Role == "leader" {
				leaders[g.Name] = served{v.st.NodeID, g.CommitIndex}
			}
			if g.Leader.ID != "" {
				elected[g.Name] = g.Leader.ID
			}
		}
	}
	// s0, s1, ..., s10: by number.
	slices.SortFunc(shards, func(a, b string) int {
		i, _ := shard.Index(a)
		k, _ := shard.Index(b)
		return cmp.Compare(i, k)
	})
	// row writes one line of the table; the shard column only where there are several.
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(cells ...string) {
		if !sharded {
			cells = slices.Delete(cells, 2, 3)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	row("NODE", "HTTP", "SHARD", "ROLE", "STATE", "TERM", "LAST LOG", "COMMIT", "APPLIED", "LAG", "LEADER")
	for _, v := range views {
		if v.err != nil {
			row("?", v.addr, "-", "unreachable", "-", "-", "-", "-", "-", "-", v.err.Error())
			continue
		}
		for _, g := range v.st.Groups {
			lag := "-"
			if l, ok := leaders[g.Name]; ok && l.commit >= g.AppliedIndex {
				lag = fmt.Sprint(l.commit - g.AppliedIndex)
			}
			leader := cmp.Or(g.Leader.ID, "-")
			row(v.st.NodeID, v.addr, g.Name, g.Role, g.State, fmt.Sprint(g.Term), fmt.Sprint(g.LastLogIndex),
				fmt.Sprint(g.CommitIndex), fmt.Sprint(g.AppliedIndex), lag, leader)
		}
	}
	w.Flush()
	if sharded {
		led := map[string][]string{}
		var nodes []string
		for _, name := range shards {
			l, ok := leaders[name]
			switch {
			case ok:
				fmt.Fprintf(out, "%s led by %s\n", name, l.node)
				if led[l.node] == nil {
					nodes = append(nodes, l.node)
				}
				led[l.node] = append(led[l.node], name)
			case elected[name] != "":
				fmt.Fprintf(out, "%s is not served by any node asked (%s was elected: it was not asked, or is not serving yet)\n", name, elected[name])
			default:
				fmt.Fprintf(out, "%s has no elected leader (an election in progress)\n", name)
			}
		}
		for _, n := range nodes {
			if len(led[n]) > 1 {
				fmt.Fprintf(out, "%s leads %d of the %d shards: %s\n", n, len(led[n]), len(shards), strings.Join(led[n], ", "))
			}
		}
	}
	if first != nil && len(first.Gone) > 0 && first.Replicas > 0 {
		fmt.Fprintf(out, "unreachable too long, their shards are kept by other nodes until they are back: %s\n", strings.Join(first.Gone, ", "))
	}
	for _, v := range views {
		if v.err == nil && v.st.ReplicaError != "" {
			fmt.Fprintf(out, "%s cannot apply the log and will not lead until replaced: %s\n", v.st.NodeID, v.st.ReplicaError)
		}
	}
	if first == nil {
		return errors.New("no node answered")
	}
	if len(first.Groups) > 0 {
		members := memberList(first.Groups[0].Servers)
		fmt.Fprintf(out, "members: %s\n", members)
		if first.Replicas > 0 {
			// Each shard is on some of them: as its leader says, else the first node asked
			// that keeps it.
			for _, name := range shards[1:] {
				if g, ok := shardView(views, name, leaders[name].node); ok {
					fmt.Fprintf(out, "%s is kept by %s\n", name, memberList(g.Servers))
				}
			}
		} else {
			// Every shard is on every member: one whose members differ from s0's is being
			// changed, or a change failed part way.
			for _, g := range first.Groups[1:] {
				if !sameMembers(g.Servers, first.Groups[0].Servers) {
					fmt.Fprintf(out, "members of %s differ: %s\n", g.Name, memberList(g.Servers))
				}
			}
		}
	}
	if !sharded && len(leaders) == 0 {
		fmt.Fprintln(out, "no leader among the nodes asked (an election in progress, or the leader was not asked)")
	}
	return nil
}

// shardView is a shard's status from node leader's answer, else from the first answer
// that has the shard.
func shardView(views []nodeView, name, leader string) (server.GroupStatus, bool) {
	var found *server.GroupStatus
	for _, v := range views {
		for i, g := range v.st.Groups {
			if g.Name != name || v.err != nil {
				continue
			}
			if v.st.NodeID == leader {
				return g, true
			}
			if found == nil {
				found = &v.st.Groups[i]
			}
		}
	}
	if found == nil {
		return server.GroupStatus{}, false
	}
	return *found, true
}

// sameMembers reports whether two shards have the same members, in any order.
func sameMembers(a, b []cluster.Server) bool {
	key := func(ss []cluster.Server) []string {
		var k []string
		for _, s := range ss {
			k = append(k, fmt.Sprintf("%s=%s/%t", s.ID, s.Addr, s.Voter))
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(key(a), key(b))
}

// memberList is a shard's members as id=addr, in the order of its configuration.
func memberList(servers []cluster.Server) string {
	var members []string
	for _, s := range servers {
		m := s.ID + "=" + s.Addr
		if !s.Voter {
			m += " (catching up)"
		}
		members = append(members, m)
	}
	return strings.Join(members, ", ")
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

func newClusterReplicasCmd(e *env, f *clusterFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "set-replicas N",
		Short: "Keep each shard on N nodes (1, 3, 5; 0: every node); s0 stays on every node",
		Long: `Changes how many nodes keep each shard but s0, which every node keeps. The
nodes then move the replicas in the background, without stopping traffic: a
shard's leader adds the nodes its new placement gives it, which catch up from a
snapshot and the log before they vote, and only then removes the nodes no longer
placed, which delete their copy. dmq cluster status shows the moves.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("N: %q is not a number", args[0])
			}
			if err := e.clusterChange(cmd.Context(), f, http.MethodPut, "/api/v1/cluster/replicas", map[string]int{"replicas": n}); err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintln(e.stdout, "every node will keep every shard; the replicas move in the background (dmq cluster status)")
			} else {
				fmt.Fprintf(e.stdout, "each shard will be kept by %d nodes (s0 by every node); the replicas move in the background (dmq cluster status)\n", n)
			}
			return nil
		},
	}
}

func newClusterTransferCmd(e *env, f *clusterFlags) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand a shard's leadership to a node (default: the most up-to-date one)",
		Long: `Hands the leadership of one shard (--shard, default s0) to the node ID, or
without ID to the most up-to-date other voter. Any node may be asked: it passes
the request on to the shard's leader.

Leaders are spread by the cluster itself (shard i prefers the i-th voter by
id): a few seconds after the transfer, a shard moved away from its preferred
node goes back to it while that node is healthy. Use the command to move a
shard off a node you are about to stop.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := shard.Index(name); err != nil {
				return fmt.Errorf("--shard: %w", err)
			}
			to := ""
			if len(args) == 1 {
				to = args[0]
			}
			path := "/api/v1/cluster/leader?" + url.Values{"shard": {name}}.Encode()
			if err := e.clusterChange(cmd.Context(), f, http.MethodPost, path, map[string]string{"to": to}); err != nil {
				return err
			}
			if to == "" {
				fmt.Fprintf(e.stdout, "leadership of %s transferred\n", name)
			} else {
				fmt.Fprintf(e.stdout, "leadership of %s transferred to %s\n", name, to)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "shard", shard.Meta, "the shard whose leadership moves (s0, s1, ...)")
	return cmd
}

// clusterChange sends a membership change to the first node that answers; a node
// that does not lead the shard concerned passes it on to the leader, waiting for one
// while a shard elects its leader.
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
