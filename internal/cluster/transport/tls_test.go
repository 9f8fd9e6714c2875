package transport

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/dmqio/dmq/internal/testcert"
)

// tlsMux is newMux with mutual TLS: the node presents cert and trusts ca.
func tlsMux(t *testing.T, node string, ca *testcert.CA, cert testcert.Cert) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{ClusterID: "c", NodeID: node, Listener: ln,
		TLS:     &tls.Config{Certificates: []tls.Certificate{cert.Pair}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		DialTLS: &tls.Config{Certificates: []tls.Certificate{cert.Pair}, RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	m.Run()
	t.Cleanup(func() { m.Close() })
	return m
}

// With mutual TLS, nodes holding certificates of the cluster's CA talk; a node with a
// certificate of another CA is refused both ways, and so is one without TLS.
func TestMutualTLSAdmitsOnlyTheClustersNodes(t *testing.T) {
	ca, rogue := testcert.NewCA(t, "cluster"), testcert.NewCA(t, "rogue")
	srv := tlsMux(t, "n1", ca, ca.Issue(t, "n1", testcert.Both, testcert.Loopback))
	acceptEcho(layer(t, srv, "s0"), "s0")

	good := tlsMux(t, "n2", ca, ca.Issue(t, "n2", testcert.Both, testcert.Loopback))
	goodLayer := layer(t, good, "s0")
	if got, err := roundTrip(t, goodLayer, srv.Addr(), "hello"); err != nil || got != "s0:hello" {
		t.Fatalf("a node of the cluster: %q, %v", got, err)
	}

	// A node whose certificate another CA signed (it trusts the cluster's CA, so only the
	// acceptor's check stops it).
	bad := tlsMux(t, "n3", ca, rogue.Issue(t, "n3", testcert.Both, testcert.Loopback))
	if got, err := roundTrip(t, layer(t, bad, "s0"), srv.Addr(), "hello"); err == nil && got != "" {
		t.Fatalf("a node with another CA's certificate got through: %q", got)
	}
	// The acceptor side too: the cluster's node does not talk to a rogue listener.
	rogueSrv := tlsMux(t, "n9", rogue, rogue.Issue(t, "n9", testcert.Both, testcert.Loopback))
	acceptEcho(layer(t, rogueSrv, "s0"), "s0")
	if _, err := roundTrip(t, goodLayer, rogueSrv.Addr(), "hello"); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("dialling a listener with another CA's certificate: %v, want a TLS error", err)
	}
	// A node without TLS.
	plain := newMux(t, "c", "n4", nil)
	if got, err := roundTrip(t, layer(t, plain, "s0"), srv.Addr(), "hello"); err == nil && got != "" {
		t.Fatalf("a node without TLS got through: %q", got)
	}
}
