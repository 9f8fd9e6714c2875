package client

import (
	"context"
	"crypto/tls"
)

// WithToken authenticates every call with an application's token (created
// by an administrator: dmq token create). Without TLS the token crosses
// the network in clear text: use WithTLS beyond loopback.
func WithToken(token string) Option { return func(o *dialOptions) { o.token = token } }

// WithTLS connects over TLS configured by cfg (RootCAs to trust the
// broker's certificate, Certificates for mutual TLS); nil uses the
// system's roots.
func WithTLS(cfg *tls.Config) Option {
	return func(o *dialOptions) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		o.tls = cfg
	}
}

// tokenCredentials puts the token on every call.
type tokenCredentials string

func (t tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false so that tokens work on loopback
// without certificates; WithToken's doc warns about the network.
func (tokenCredentials) RequireTransportSecurity() bool { return false }
