package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/dmqio/dmq/client"
)

// dialAddr dials addr (which may differ from --server, as for a broker a
// benchmark starts itself) with the credentials of the flags.
func (e *env) dialAddr(addr string, extra ...client.Option) (*client.Client, error) {
	opts, err := e.dialOptions()
	if err != nil {
		return nil, err
	}
	return client.Dial(addr, append(opts, extra...)...)
}

// dialOptions turns --token and the --tls-* flags into SDK options.
func (e *env) dialOptions() ([]client.Option, error) {
	var opts []client.Option
	if e.token != "" {
		opts = append(opts, client.WithToken(e.token))
	}
	tc, err := e.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, client.WithTLS(tc))
	}
	return opts, nil
}

// tlsConfig turns the --tls-* flags into a client TLS configuration; nil without them.
func (e *env) tlsConfig() (*tls.Config, error) {
	if e.tlsCA == "" && e.tlsCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.tlsCA != "" {
		pem, err := os.ReadFile(e.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", e.tlsCA)
		}
	}
	if e.tlsCert != "" || e.tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(e.tlsCert, e.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
