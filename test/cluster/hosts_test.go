package cluster_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostCall sends method path to nd's HTTP port with the given Host header.
func hostCall(t *testing.T, nd *node, host, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, nd.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := nd.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterHTTPAnswersOnlyItsOwnNames: in a cluster of three nodes and three shards,
// where a node passes requests for shards it does not lead on to their leaders (with the
// Host they came with), every node refuses a foreign Host (DNS rebinding) and serves
// localhost, its own address and the names of --http-allowed-hosts, also for the
// shards it passes on; the nodes' own calls to each other and `dmq cluster status` work.
func TestClusterHTTPAnswersOnlyItsOwnNames(t *testing.T) {
	const shards = 3
	c := startCluster(t, 3, "--shards", fmt.Sprint(shards), "--http-allowed-hosts", "dmq.example.com")
	c.waitSpread(60 * time.Second)

	// Topics created through every node, each on the shard its name hashes to: most are
	// passed on to another node's leader.
	var topics []string
	for i, nd := range c.nodes {
		for j := range 2 {
			topic := fmt.Sprintf("dev.hosts.t%d%d", i, j)
			body := fmt.Sprintf(`{"name":%q,"owner":"ops"}`, topic)
			if code, resp := hostCall(t, nd, "dmq.example.com", "POST", "/api/v1/topics", body); code != http.StatusCreated && code != http.StatusOK {
				t.Fatalf("%s: create %s with Host dmq.example.com: %d %s", nd.id, topic, code, resp)
			}
			topics = append(topics, topic)
		}
	}
	for _, nd := range c.nodes {
		for _, host := range []string{"dmq.example.com:7480", "localhost", nd.http} {
			code, body := hostCall(t, nd, host, "GET", "/api/v1/topics", "")
			if code != http.StatusOK || strings.Count(body, `"dev.hosts.`) != len(topics) {
				t.Fatalf("%s: list with Host %s: %d %s; want the %d topics", nd.id, host, code, body, len(topics))
			}
			for _, topic := range topics {
				if code, body := hostCall(t, nd, host, "GET", "/api/v1/topics/"+topic, ""); code != http.StatusOK {
					t.Fatalf("%s: GET %s with Host %s: %d %s", nd.id, topic, host, code, body)
				}
			}
		}
		for _, path := range []string{"/api/v1/topics", "/api/v1/topics/" + topics[0], "/api/v1/cluster", "/metrics", "/"} {
			if code, body := hostCall(t, nd, "rebound.example.net", "GET", path, ""); code != http.StatusMisdirectedRequest || !strings.Contains(body, "DNS rebinding") {
				t.Fatalf("%s: GET %s with Host rebound.example.net: %d %s; want 421", nd.id, path, code, body)
			}
		}
	}
	var https []string
	for _, nd := range c.nodes {
		https = append(https, nd.http)
	}
	if out := runCLI(t, "cluster", "status", "--http", strings.Join(https, ",")); !strings.Contains(out, "s2") {
		t.Fatalf("dmq cluster status:\n%s", out)
	}
}
