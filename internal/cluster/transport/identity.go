package transport

import (
	"crypto/x509"
	"slices"
	"strings"
)

// CertNames reports whether the leaf of a verified certificate chain names node id: as
// its subject's common name or one of its DNS names. A cluster node's certificate must
// name its node id so that, over mutual TLS, a certificate of the cluster's CA admits
// that one node and no other.
func CertNames(chain []*x509.Certificate, id string) bool {
	if len(chain) == 0 || id == "" {
		return false
	}
	leaf := chain[0]
	return leaf.Subject.CommonName == id || slices.Contains(leaf.DNSNames, id)
}

// certNameList is the names a certificate chain's leaf carries, for errors.
func certNameList(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return "no certificate"
	}
	leaf := chain[0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	return strings.Join(slices.DeleteFunc(names, func(s string) bool { return s == "" }), ", ")
}
