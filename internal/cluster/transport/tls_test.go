package transport

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
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

// A certificate of the cluster's CA admits the node it names only: a node presenting
// another node's certificate is refused by the acceptor, and a dialer drops an acceptor
// whose certificate names another node than the one it answers as.
func TestMutualTLSTiesNodeIDsToCertificates(t *testing.T) {
	ca := testcert.NewCA(t, "cluster")
	srv := tlsMux(t, "n1", ca, ca.Issue(t, "n1", testcert.Both, testcert.Loopback))
	acceptEcho(layer(t, srv, "s0"), "s0")

	impostor := tlsMux(t, "n3", ca, ca.Issue(t, "n2", testcert.Both, testcert.Loopback))
	_, err := roundTrip(t, layer(t, impostor, "s0"), srv.Addr(), "hello")
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Status != StatusWrongIdentity {
		t.Fatalf("node n3 with n2's certificate: %v, want a refusal with status %q", err, StatusWrongIdentity)
	}

	// The acceptor side: a listener answering as n5 with a certificate naming n4.
	liar := tlsMux(t, "n5", ca, ca.Issue(t, "n4", testcert.Both, testcert.Loopback))
	acceptEcho(layer(t, liar, "s0"), "s0")
	good := tlsMux(t, "n2", ca, ca.Issue(t, "n2", testcert.Both, testcert.Loopback))
	if _, err := roundTrip(t, layer(t, good, "s0"), liar.Addr(), "hello"); err == nil || !strings.Contains(err.Error(), "does not name") {
		t.Fatalf("dialling a node whose certificate names another: %v, want it dropped", err)
	}
}

func TestCertNames(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "host-a"}, DNSNames: []string{"n1", "n1.dmq.internal"}}
	for id, want := range map[string]bool{"host-a": true, "n1": true, "n1.dmq.internal": true, "n2": false, "": false} {
		if got := CertNames([]*x509.Certificate{leaf}, id); got != want {
			t.Errorf("CertNames(%q) = %t, want %t", id, got, want)
		}
	}
	if CertNames(nil, "n1") {
		t.Error("no certificate names n1")
	}
}
