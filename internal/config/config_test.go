package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadLayersFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dmq.yaml")
	os.WriteFile(path, []byte("data: /var/lib/dmq\nack_timeout: 45s\nlisten: 127.0.0.1:9000\n"), 0o644)
	env := map[string]string{"DMQ_LISTEN": "127.0.0.1:9100", "DMQ_NO_SYNC": "true"}
	c, err := Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/dmq" || c.AckTimeout != 45*time.Second || c.Listen != "127.0.0.1:9100" || !c.NoSync || c.HTTP != Default().HTTP {
		t.Fatalf("Load = %+v", c)
	}
}

// A server is its own cluster's only voter unless told standalone.
func TestDefaultIsAOneVoterCluster(t *testing.T) {
	c, err := Load("", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.NodeID != "n1" || c.Peers != "" || c.Join {
		t.Fatalf("default: clustered %v, node %q, peers %q, join %v; want the one voter n1", c.Clustered(), c.NodeID, c.Peers, c.Join)
	}
	c, err = Load("", func(k string) string { return map[string]string{"DMQ_STANDALONE": "true"}[k] })
	if err != nil || c.Clustered() {
		t.Fatalf("standalone: clustered %v, err %v", c.Clustered(), err)
	}
}

func TestLoadRejectsBadSettings(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		file string
		env  map[string]string
		want string
	}{
		"unknown key":              {file: "colour: red\n", want: "colour"},
		"bad duration":             {env: map[string]string{"DMQ_ACK_TIMEOUT": "soon"}, want: "DMQ_ACK_TIMEOUT"},
		"bad address":              {env: map[string]string{"DMQ_LISTEN": "nowhere"}, want: "listen"},
		"tiny body limit":          {env: map[string]string{"DMQ_MAX_BODY_BYTES": "0"}, want: "max_body_bytes"},
		"bad log level":            {file: "log_level: loud\n", want: "log_level"},
		"standalone with shards":   {file: "standalone: true\nshards: 3\n", want: "standalone"},
		"standalone with peers":    {file: "standalone: true\npeers: n1=127.0.0.1:7431\n", want: "standalone"},
		"empty node id":            {file: "node_id: \"\"\n", want: "node_id"},
		"no shards":                {file: "node_id: n1\nshards: 0\n", want: "shards"},
		"too many shards":          {file: "node_id: n1\nshards: 65\n", want: "shards"},
		"standalone with replicas": {env: map[string]string{"DMQ_STANDALONE": "true", "DMQ_REPLICAS": "3"}, want: "standalone"},
		"even replicas":            {file: "node_id: n1\nreplicas: 2\n", want: "use 1 or 3"},
		"negative replicas":        {file: "node_id: n1\nreplicas: -1\n", want: "replicas"},
		"replace too soon":         {file: "node_id: n1\nreplace_after: 1s\n", want: "replace_after"},
		"shards over TLS":          {file: "node_id: n1\nshards: 3\ntls_cert: a.pem\ntls_key: a.key\n", want: "cluster_ca"},
		"cluster CA alone":         {file: "node_id: n1\ncluster_ca: ca.pem\n", want: "tls_cert"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
				os.WriteFile(path, []byte(tc.file), 0o644)
			}
			_, err := Load(path, func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want one naming %q", err, tc.want)
			}
		})
	}
}
