// Package server wires a broker to its network endpoints: the gRPC API (with
// reflection and the standard health service) and the HTTP side (health now;
// metrics and the console later). It owns their goroutines and lifecycle:
// New validates, Start listens and serves, Shutdown stops everything.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dmqio/dmq/internal/admin"
	"github.com/dmqio/dmq/internal/auth"
	"github.com/dmqio/dmq/internal/broker"
	"github.com/dmqio/dmq/internal/bufpool"
	"github.com/dmqio/dmq/internal/config"
	"github.com/dmqio/dmq/internal/console"
	"github.com/dmqio/dmq/internal/diskfs"
	"github.com/dmqio/dmq/internal/rpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Server is one broker with its gRPC and HTTP endpoints: a single node, or a cluster
// node that serves clients while it leads (cluster.go).
type Server struct {
	cfg    config.Config
	logger *slog.Logger
	tc     *tls.Config

	grpcLis net.Listener
	httpLis net.Listener
	http    *http.Server

	single *stack       // a single node's broker and endpoints
	node   *clusterNode // a cluster node's replica, Raft and role; nil on a single node

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// New validates cfg. It starts nothing.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	return &Server{cfg: cfg, logger: logger}, nil
}

// Start opens the broker and begins serving on both addresses. On error
// nothing is left running.
func (s *Server) Start() error {
	var err error
	if s.tc, err = tlsConfig(s.cfg); err != nil {
		return err
	}
	s.grpcLis, err = net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", s.cfg.Listen, err)
	}
	s.httpLis, err = net.Listen("tcp", s.cfg.HTTP)
	if err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen for HTTP on %s: %w", s.cfg.HTTP, err)
	}
	if s.cfg.Clustered() {
		if err := s.startCluster(); err != nil {
			s.grpcLis.Close()
			s.httpLis.Close()
			return err
		}
		s.serveHTTP(s.node)
		s.logger.Info("dmq cluster node started", "node", s.cfg.NodeID, "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "cluster", s.node.node.Addr(), "data", s.cfg.DataDir)
		return nil
	}
	if err := refuseClusterData(s.cfg.FS, s.cfg.DataDir); err != nil {
		s.grpcLis.Close()
		s.httpLis.Close()
		return err
	}
	st, err := s.openStack()
	if err != nil {
		s.grpcLis.Close()
		s.httpLis.Close()
		return err
	}
	s.single = st
	s.goFunc(func() {
		if err := st.grpc.Serve(s.grpcLis); err != nil {
			s.logger.Error("gRPC server stopped", "err", err)
		}
	})
	s.serveHTTP(st.http)
	s.logger.Info("dmq server started", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "data", s.cfg.DataDir, "fsync", !s.cfg.NoSync)
	return nil
}

// refuseClusterData refuses to open a cluster node's data directory without Raft: the
// broker would change the shard's state behind its log, which the node would replay
// over it when started as a node again.
func refuseClusterData(fsys vfs.FS, dir string) error {
	held, err := diskfs.Exists(fsys, filepath.Join(dir, "raft"))
	switch {
	case err != nil:
		return err
	case held:
		return fmt.Errorf("data directory %s belongs to a cluster node (it holds raft/): start it without --standalone", dir)
	default:
		return nil
	}
}

// stack is one broker with what serves it: its gRPC server and HTTP handler.
type stack struct {
	b      *broker.Broker
	grpc   *grpc.Server
	health *health.Server
	http   http.Handler
}

// openStack opens a single node's broker and builds its endpoints.
func (s *Server) openStack() (*stack, error) {
	b, apps, err := s.openBroker(nil, nil)
	if err != nil {
		return nil, err
	}
	pool := bufpool.New()
	st := &stack{b: b}
	st.grpc = grpc.NewServer(append(s.grpcOptions(pool), grpcSecurity(s.tc, apps, s.cfg.Auth)...)...)
	rpc.Register(st.grpc, b, apps, s.cfg.Version)
	st.health = health.NewServer()
	healthpb.RegisterHealthServer(st.grpc, st.health)
	st.health.SetServingStatus("dmq.v1.Broker", healthpb.HealthCheckResponse_SERVING)
	reflection.Register(st.grpc)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleHealth)
	reg := prometheus.NewRegistry()
	reg.MustRegister(admin.NewCollector(b), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.apiRoutes(mux, b, apps)
	st.http = mux
	return st, nil
}

// openBroker opens a broker on storage (nil: the data directory). apps is the registry
// of the applications and users that may use it; nil opens the broker's own (a single
// node's).
func (s *Server) openBroker(storage broker.Storage, apps *auth.Registry) (*broker.Broker, *auth.Registry, error) {
	b, err := broker.Open(broker.Config{
		DataDir:             s.cfg.DataDir,
		FS:                  s.cfg.FS,
		Storage:             storage,
		WallClock:           s.cfg.WallClock,
		NoSync:              s.cfg.NoSync,
		MaxBodyBytes:        s.cfg.MaxBodyBytes,
		SegmentBytes:        s.cfg.SegmentBytes,
		AckTimeout:          s.cfg.AckTimeout,
		RetentionAge:        s.cfg.RetentionAge,
		RetentionBytes:      s.cfg.RetentionBytes,
		RetentionInterval:   s.cfg.RetentionInterval,
		DedupeWindow:        s.cfg.DedupeWindow,
		MaxDelay:            s.cfg.MaxDelay,
		AutoApproveEnvs:     s.cfg.AutoApproveEnvs,
		AllowSelfApproval:   s.cfg.AllowSelfApproval,
		HeartbeatInterval:   s.cfg.HeartbeatInterval,
		ClientTimeout:       s.cfg.ClientTimeout,
		ClientRetention:     s.cfg.ClientRetention,
		AbandonedGroupAfter: s.cfg.AbandonedGroupAfter,
		ServerName:          s.cfg.ServerName,
		StatsRetention:      s.cfg.StatsRetention,
		NoTrace:             s.cfg.NoTrace,
		TraceRetention:      s.cfg.TraceRetention,
		Logger:              s.logger,
	})
	if err != nil {
		return nil, nil, err
	}
	if apps != nil {
		return b, apps, nil
	}
	apps, err = auth.Open(b.Store())
	if err == nil {
		err = s.announceSecurity(apps)
	}
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, apps, nil
}

// apiRoutes adds what serves b over HTTP: the admin API, profiles and the console. It
// returns a wrapper that lets only administrators through (everyone without --auth).
func (s *Server) apiRoutes(mux *http.ServeMux, b *broker.Broker, apps *auth.Registry) (adminOnly func(http.Handler) http.Handler) {
	sec := admin.Security{Registry: apps, On: s.cfg.Auth, TLS: s.tc != nil}
	mux.Handle("/api/v1/", admin.NewAPI(b, sec))
	// Profiles for performance work; with --auth, for administrators only.
	mux.Handle("GET /debug/pprof/", admin.AdminOnly(b, sec, http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", admin.AdminOnly(b, sec, http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/trace", admin.AdminOnly(b, sec, http.HandlerFunc(pprof.Trace)))
	mux.Handle("/", console.Handler())
	return func(h http.Handler) http.Handler { return admin.AdminOnly(b, sec, h) }
}

// grpcOptions are the gRPC server's transport settings.
func (s *Server) grpcOptions(pool *bufpool.Pool) []grpc.ServerOption {
	bad := new(bufpool.Malformed)
	return append([]grpc.ServerOption{
		// A record carries the body plus key and headers: allow a full batch.
		grpc.MaxRecvMsgSize(s.cfg.MaxBodyBytes + (16 << 20)),
		grpc.MaxSendMsgSize(s.cfg.MaxBodyBytes + (16 << 20)),
		// Buffers gRPC does not zero: see package bufpool.
		experimental.BufferPool(pool),
		// A request that does not decode is refused with InvalidArgument by
		// the first interceptors, not with gRPC's Internal.
		grpc.ForceServerCodecV2(bufpool.Codec{Pool: pool, Malformed: bad}),
		// Large flow-control windows and socket buffers: a pipelined producer
		// keeps about 1 MB in flight (W3 1.25x, broker CPU 0.9x per message).
		grpc.InitialWindowSize(8 << 20), grpc.InitialConnWindowSize(16 << 20),
		grpc.ReadBufferSize(256 << 10), grpc.WriteBufferSize(256 << 10),
		// The SDK pings a connection that received nothing for 10 s, also without a
		// call in progress, to notice a node that stopped answering (client/watchdog.go).
		// gRPC's default policy (5 minutes, not without calls) would answer those pings
		// by closing the connection ("too_many_pings").
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}, rpc.MalformedInterceptors(bad)...)
}

// stopServing ends subscriptions and stops the gRPC server, letting calls in
// progress finish until ctx is done.
func (st *stack) stopServing(ctx context.Context) {
	st.health.Shutdown()
	st.b.EndSubscriptions()
	stopGRPC(ctx, st.grpc)
}

// stopGRPC stops g, letting calls in progress finish until ctx is done.
func stopGRPC(ctx context.Context, g *grpc.Server) {
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		g.Stop()
		<-stopped
	}
}

// serveHTTP serves h on the HTTP listener, to requests that name this server as
// their Host (hosts.go).
func (s *Server) serveHTTP(h http.Handler) {
	g := s.newHostGuard(h)
	if s.node != nil {
		g.more = s.node.memberHost
	}
	s.http = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.tc}
	lis := s.httpLis
	if s.tc != nil {
		lis = tls.NewListener(lis, s.tc)
	}
	s.goFunc(func() {
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("HTTP server stopped", "err", err)
		}
	})
}

func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// GRPCAddr is the address the gRPC API listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address the HTTP side listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Broker returns the running broker: a single node's, or a cluster node's while it
// leads (nil otherwise).
func (s *Server) Broker() *broker.Broker {
	if s.node != nil {
		return s.node.broker()
	}
	return s.single.b
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"status": "ok", "fsync": !s.cfg.NoSync})
}

// Shutdown stops accepting, ends subscriptions, lets publishes in progress
// finish until ctx is done, then closes the broker. Safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if s.node != nil {
			s.http.Shutdown(ctx)
			s.stopErr = s.node.shutdown(ctx)
			s.wg.Wait()
			s.logger.Info("dmq cluster node stopped")
			return
		}
		s.single.stopServing(ctx)
		s.http.Shutdown(ctx)
		s.wg.Wait()
		s.stopErr = s.single.b.Close()
		s.logger.Info("dmq server stopped")
	})
	return s.stopErr
}
