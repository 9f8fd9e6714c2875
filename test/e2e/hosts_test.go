package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/dmqtest"
)

// hostCall sends method path to the server's HTTP port with the given Host header.
func hostCall(t *testing.T, httpAddr, host, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A web page that points a name of its own at the broker (DNS rebinding) gets
// nothing: the HTTP port answers only to localhost, loopback addresses, its own
// addresses and the names of --http-allowed-hosts, in every mode.
func TestHTTPRefusesForeignHostNames(t *testing.T) {
	modes := []struct {
		name string
		auth bool
		edit func(*config.Config)
	}{
		{"one-voter", false, func(c *config.Config) { c.Standalone = false; c.ClusterListen = "127.0.0.1:0" }},
		{"standalone", false, func(c *config.Config) { c.Standalone = true }},
		{"auth", true, func(c *config.Config) { c.Auth = true }},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := dmqtest.Start(t, "", func(c *config.Config) {
				m.edit(c)
				c.HTTPAllowedHosts = []string{"dmq.example.com"}
			})
			addr := s.HTTPAddr()
			_, port, _ := net.SplitHostPort(addr)
			if !m.auth {
				c := dmqtest.Dial(t, s.GRPCAddr())
				setupTopic(t, c, "test.host.orders", client.GroupSpec{Name: "billing"})
			}
			for _, host := range []string{"evil.example", "evil.example:" + port, "attacker.localhost.evil.com", "10.11.12.13:" + port, "dmq.example.org"} {
				for _, rq := range []struct{ method, path, body string }{
					{"GET", "/api/v1/topics", ""},
					{"POST", "/api/v1/topics/test.host.orders/groups/billing/reset", `{"to":"latest"}`},
					{"GET", "/", ""},
					{"GET", "/metrics", ""},
				} {
					code, body := hostCall(t, addr, host, rq.method, rq.path, rq.body)
					if code != http.StatusMisdirectedRequest || !strings.Contains(body, "DNS rebinding") || !strings.Contains(body, "--http-allowed-hosts") {
						t.Errorf("%s %s with Host %s: %d %s, want 421 naming DNS rebinding and --http-allowed-hosts", rq.method, rq.path, host, code, body)
					}
				}
			}
			want := http.StatusOK
			if m.auth {
				want = http.StatusUnauthorized // past the Host check, stopped by authentication
			}
			for _, host := range []string{"localhost", "localhost:" + port, "LOCALHOST.", "127.0.0.1", addr, "[::1]:" + port, "[::1]", "dmq.example.com", "DMQ.example.com:8443"} {
				if code, body := hostCall(t, addr, host, "GET", "/api/v1/topics", ""); code != want {
					t.Errorf("GET /api/v1/topics with Host %s: %d %s, want %d", host, code, body, want)
				}
				if code, body := hostCall(t, addr, host, "GET", "/healthz", ""); code != http.StatusOK {
					t.Errorf("GET /healthz with Host %s: %d %s, want 200", host, code, body)
				}
			}
		})
	}
}
