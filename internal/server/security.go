package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsConfig loads the certificate, key and optional client CA of cfg; nil
// when TLS is off.
func tlsConfig(cfg config.Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pool, err := loadCA("client CA", cfg.TLSClientCA)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// loadCA reads a PEM file of CA certificates (what names it in errors).
func loadCA(what, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", what, path)
	}
	return pool, nil
}

// grpcSecurity returns the gRPC server options for TLS and authentication.
func grpcSecurity(tc *tls.Config, reg *auth.Registry, authOn bool) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	if authOn {
		opts = append(opts, rpc.AuthInterceptors(reg)...)
	}
	return opts
}

// announceSecurity says how the server is protected, and prints the
// one-time setup token when authentication is on and no administrator
// exists yet.
func (s *Server) announceSecurity(reg *auth.Registry) error {
	switch {
	case !s.cfg.Auth && config.Loopback(s.cfg.Listen) && config.Loopback(s.cfg.HTTP):
		s.logger.Info("authentication is off: anyone on this machine may use the broker; it listens on loopback only (start with --auth to require tokens)")
	case !s.cfg.Auth:
		s.logger.Warn("authentication is off and the broker listens beyond loopback (--insecure): anyone who reaches it may do anything")
	}
	if !s.cfg.Auth {
		return nil
	}
	setup, err := reg.EnsureAdmin()
	if err != nil {
		return fmt.Errorf("create the setup token: %w", err)
	}
	if setup != "" {
		s.logger.Warn("no administrator token yet: create one with the one-time setup token, which stops working once an administrator exists",
			"setup_token", setup, "example", "dmq token create ops --admin --token "+setup)
	}
	return nil
}
