package server

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/dmqio/dmq/internal/cluster"
)

// The HTTP port answers only requests whose Host header names this server. A web page
// the operator visits can point a name of its own at 127.0.0.1 once the page is loaded
// (DNS rebinding): the browser then sends the page's requests to the broker as requests
// of the page's own origin, so the page could read everything and reset groups or purge
// dead letters — without --auth nothing else stops it. Such requests carry the page's
// name as Host, which is no name of this server, and are refused.
//
// Accepted as Host, whatever the port: the loopback names (localhost, 127.0.0.1, [::1]);
// the hosts of the configured listen addresses (http, listen, cluster_listen) and of the
// peers list; the IP address the request arrived at (a browser that was given that IP
// address, not a name, cannot be rebound); in a cluster, the addresses the other nodes
// announce (a node passes a request on to a shard's leader with the Host it came with);
// and every name of http_allowed_hosts ("*": any).

// hostGuard refuses requests whose Host names no address of this server.
type hostGuard struct {
	names map[string]bool // lower-case, no port, no brackets
	any   bool
	// more, when not nil, reports other accepted hosts (a cluster's members).
	more func(host string) bool
	next http.Handler
}

// newHostGuard accepts the hosts of cfg (see above) in front of next.
func (s *Server) newHostGuard(next http.Handler) *hostGuard {
	g := &hostGuard{names: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}, next: next}
	addrs := []string{s.cfg.HTTP, s.cfg.Listen, s.HTTPAddr(), s.GRPCAddr()}
	if s.cfg.Clustered() {
		addrs = append(addrs, s.cfg.ClusterListen)
		if peers, err := cluster.ParsePeers(s.cfg.Peers); err == nil {
			for _, p := range peers {
				addrs = append(addrs, p.Addr)
			}
		}
	}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			g.names[canonicalHost(h)] = true
		}
	}
	for _, h := range s.cfg.HTTPAllowedHosts {
		if h == "*" {
			g.any = true
		}
		g.names[canonicalHost(hostOnly(h))] = true
	}
	return g
}

func (g *hostGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.allowed(r) {
		g.next.ServeHTTP(w, r)
		return
	}
	writeHostError(w, r.Host)
}

// allowed reports whether r's Host names this server.
func (g *hostGuard) allowed(r *http.Request) bool {
	if g.any || r.Host == "" { // HTTP/1.0 without Host: no browser sends that
		return true
	}
	host := canonicalHost(hostOnly(r.Host))
	if g.names[host] {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		// The address the client connected to, given as such.
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ta, ok := la.(*net.TCPAddr); ok && ta.IP.Equal(ip) {
				return true
			}
		}
		return false
	}
	return g.more != nil && g.more(host)
}

// writeHostError answers a refused Host in the admin API's error format.
func writeHostError(w http.ResponseWriter, host string) {
	msg := fmt.Sprintf("Host %q is not a name of this server, so the request is refused: a web page may have pointed that name at it (DNS rebinding). "+
		"Use localhost or the configured address, or add the name with --http-allowed-hosts (http_allowed_hosts)", host)
	writeJSON(w, http.StatusMisdirectedRequest, map[string]any{"error": map[string]string{"code": "PermissionDenied", "message": msg}})
}

// hostOnly strips the port from a Host header (and the brackets of an IPv6 address).
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// canonicalHost lower-cases a host name and drops a final dot (localhost. is
// localhost) and IPv6 brackets.
func canonicalHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// memberHost reports whether host is the host of another cluster member's client
// address, as the members announce them.
func (c *clusterNode) memberHost(host string) bool {
	c.peerBook.mu.Lock()
	defer c.peerBook.mu.Unlock()
	for _, v := range c.peerBook.peers {
		for _, a := range []string{v.info.HTTP, v.info.GRPC} {
			if h, _, err := net.SplitHostPort(a); err == nil && canonicalHost(h) == host {
				return true
			}
		}
	}
	return false
}
