package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// DefaultHandshakeTimeout bounds the hello and the reply on both sides of a connection.
const DefaultHandshakeTimeout = 5 * time.Second

// ErrClosed is returned by Accept and Dial once the layer or its Mux is closed.
var ErrClosed = errors.New("transport: closed")

// Config configures a Mux.
type Config struct {
	// ClusterID is sent in every hello; connections naming another cluster are refused.
	ClusterID string
	// NodeID is this node's id, sent in every hello and reply.
	NodeID string
	// Listener is the node's cluster listener. The Mux owns it from New on and closes it.
	Listener net.Listener
	// AdvertiseAddr is the address peers dial to reach this node; empty means
	// Listener.Addr().String().
	AdvertiseAddr string
	// HandshakeTimeout bounds each handshake; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger receives refusals and accept errors; nil discards them.
	Logger *slog.Logger
	// Faults, when not nil, turns fault injection on (tests only). Nil costs nothing.
	Faults *Faults
	// TLS, when not nil, makes every accepted connection a TLS server connection (with
	// ClientAuth set to require and verify certificates, the port is authenticated), and
	// DialTLS every dialled one a TLS client connection (its ServerName defaults to the
	// host dialled). The handshake of package transport runs inside TLS.
	TLS, DialTLS *tls.Config
}

// Mux owns a node's cluster listener and routes each accepted connection, by the group named
// in its hello, to that group's Layer.
type Mux struct {
	cfg  Config
	addr advertisedAddr
	log  *slog.Logger

	quit chan struct{} // closed by Close: stops the accept loop and pending hand-offs
	wg   sync.WaitGroup

	mu struct {
		sync.Mutex
		layers  map[string]*Layer
		pending map[net.Conn]struct{} // connections in their handshake, closed by Close
		closed  bool
	}
}

// New validates cfg and returns a Mux that accepts nothing until Run.
func New(cfg Config) (*Mux, error) {
	if cfg.ClusterID == "" || cfg.NodeID == "" {
		return nil, errors.New("transport: cluster id and node id are required")
	}
	if len(cfg.ClusterID) > maxField || len(cfg.NodeID) > maxField {
		return nil, fmt.Errorf("transport: cluster id and node id must be at most %d bytes", maxField)
	}
	if cfg.Listener == nil {
		return nil, errors.New("transport: a listener is required")
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = cfg.Listener.Addr().String()
	}
	if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
		return nil, fmt.Errorf("transport: advertise address %q: %w", cfg.AdvertiseAddr, err)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		cfg:  cfg,
		addr: advertisedAddr(cfg.AdvertiseAddr),
		log:  log.With("node", cfg.NodeID),
		quit: make(chan struct{}),
	}
	m.mu.layers = make(map[string]*Layer)
	m.mu.pending = make(map[net.Conn]struct{})
	if cfg.Faults != nil {
		cfg.Faults.register(cfg.NodeID)
	}
	return m, nil
}

// Addr is the address peers dial to reach this node.
func (m *Mux) Addr() string { return string(m.addr) }

// go runs f on a goroutine that Close waits for.
func (m *Mux) goFunc(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// Run starts the accept loop. Call it once.
func (m *Mux) Run() {
	m.goFunc(m.acceptLoop)
}

// acceptLoop accepts connections until the listener is closed (by Close) and gives each one
// its own goroutine for the handshake, so a slow or silent dialer holds up nobody else.
func (m *Mux) acceptLoop() {
	for {
		c, err := m.cfg.Listener.Accept()
		if err != nil {
			select {
			case <-m.quit:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("cluster listener accept failed; no more connections are accepted", "addr", m.Addr(), "err", err)
			return
		}
		if !m.track(c) {
			c.Close()
			return
		}
		m.goFunc(func() { m.serve(c) })
	}
}

// track registers a connection in its handshake, so that Close does not wait out its
// handshake timeout; false once closed.
func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return false
	}
	m.mu.pending[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.mu.pending, c)
	m.mu.Unlock()
}

// serve runs the acceptor side of the handshake and hands the connection to its layer.
func (m *Mux) serve(c net.Conn) {
	defer m.untrack(c)
	if m.cfg.TLS != nil {
		tc := tls.Server(c, m.cfg.TLS)
		c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			m.log.Warn("refused cluster connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		c = tc
	}
	refuse := func(st Status, msg string, args ...any) {
		m.log.Warn("refused cluster connection: "+msg, append(args, "remote", c.RemoteAddr().String(), "status", st.String())...)
		c.SetWriteDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
		c.Write(reply{status: st, nodeID: m.cfg.NodeID, msg: msg}.marshal())
		c.Close()
	}
	c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	h, err := readHello(c)
	if err != nil {
		m.log.Warn("cluster connection dropped during handshake", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	switch {
	case h.version != Version:
		refuse(StatusBadVersion, fmt.Sprintf("handshake version %d, this node speaks %d", h.version, Version), "version", h.version)
		return
	case h.clusterID != m.cfg.ClusterID:
		refuse(StatusClusterMismatch, fmt.Sprintf("cluster id %q, this node belongs to cluster %q", h.clusterID, m.cfg.ClusterID), "peer", h.nodeID, "cluster", h.clusterID)
		return
	}
	if f := m.cfg.Faults; f != nil && !f.connAllowed(h.nodeID, m.cfg.NodeID) {
		c.Close() // a cut link answers nothing
		return
	}
	if tc, ok := c.(*tls.Conn); ok && !CertNames(tc.ConnectionState().PeerCertificates, h.nodeID) {
		refuse(StatusWrongIdentity, fmt.Sprintf("the certificate presented does not name node %q (its names: %s)", h.nodeID, certNameList(tc.ConnectionState().PeerCertificates)), "peer", h.nodeID)
		return
	}
	l := m.layer(h.group)
	if l == nil {
		refuse(StatusUnknownGroup, fmt.Sprintf("group %q is not hosted on node %s", h.group, m.cfg.NodeID), "peer", h.nodeID, "group", h.group)
		return
	}
	if _, err := c.Write(reply{status: StatusOK, nodeID: m.cfg.NodeID}.marshal()); err != nil {
		m.log.Warn("cluster connection dropped during handshake", "remote", c.RemoteAddr().String(), "peer", h.nodeID, "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if f := m.cfg.Faults; f != nil {
		c = &faultConn{Conn: c, f: f, local: m.cfg.NodeID, remote: h.nodeID}
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	case <-m.quit:
		c.Close()
	}
}

func (m *Mux) layer(group string) *Layer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.layers[group]
}

// Layer registers group and returns its raft.StreamLayer. A group has at most one live layer;
// closing the layer unregisters it.
func (m *Mux) Layer(group string) (*Layer, error) {
	if group == "" || len(group) > maxField {
		return nil, fmt.Errorf("transport: group name %q must be 1 to %d bytes", group, maxField)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrClosed
	}
	if _, ok := m.mu.layers[group]; ok {
		return nil, fmt.Errorf("transport: group %q already has a layer on node %s", group, m.cfg.NodeID)
	}
	l := &Layer{m: m, group: group, conns: make(chan net.Conn), done: make(chan struct{})}
	m.mu.layers[group] = l
	return l, nil
}

// Close stops accepting, closes the listener and every layer, and waits for the Mux's
// goroutines. Connections already handed to layers belong to their raft transports.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	layers := make([]*Layer, 0, len(m.mu.layers))
	for _, l := range m.mu.layers {
		layers = append(layers, l)
	}
	for c := range m.mu.pending {
		c.Close()
	}
	m.mu.Unlock()
	close(m.quit)
	err := m.cfg.Listener.Close()
	for _, l := range layers {
		l.Close()
	}
	m.wg.Wait()
	return err
}

// Layer is one group's view of the Mux: a raft.StreamLayer whose Accept yields the
// connections whose hello named the group and whose Dial opens connections that name it.
type Layer struct {
	m     *Mux
	group string
	conns chan net.Conn // handshaken connections for this group, handed over by Mux.serve
	done  chan struct{} // closed by Close
	once  sync.Once

	// dialed holds the connections Dial made and not closed yet: Close closes them, so
	// that a call waiting on a peer that stopped answering (SIGSTOP) ends at once and
	// Raft's shutdown does not wait out the call's timeout.
	dialedMu sync.Mutex
	dialed   map[*dialedConn]struct{}
}

// dialedConn is a connection Dial made; closing it forgets it.
type dialedConn struct {
	net.Conn
	l    *Layer
	once sync.Once
}

func (c *dialedConn) Close() error {
	c.once.Do(func() {
		c.l.dialedMu.Lock()
		delete(c.l.dialed, c)
		c.l.dialedMu.Unlock()
	})
	return c.Conn.Close()
}

var _ raft.StreamLayer = (*Layer)(nil)

// Accept waits for the next connection addressed to this group.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// Close unregisters the group from the Mux; the shared listener stays open.
func (l *Layer) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		if l.m.mu.layers[l.group] == l {
			delete(l.m.mu.layers, l.group)
		}
		l.m.mu.Unlock()
		l.dialedMu.Lock()
		dialed := l.dialed
		l.dialed = nil
		l.dialedMu.Unlock()
		for c := range dialed {
			c.Conn.Close()
		}
	})
	return nil
}

// Addr is the node's advertised cluster address, the same for every group.
func (l *Layer) Addr() net.Addr { return l.m.addr }

// Dial connects to the node at address, runs the handshake for this group and returns the
// connection ready for Raft traffic. A refusal is a *RefusedError naming the mismatch.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.done:
		return nil, ErrClosed
	default:
	}
	m := l.m
	hs := m.cfg.HandshakeTimeout
	if timeout > 0 && timeout < hs {
		hs = timeout
	}
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if m.cfg.DialTLS != nil {
		cfg := m.cfg.DialTLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(string(address))
		}
		tc := tls.Client(c, cfg)
		c.SetDeadline(time.Now().Add(hs))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("transport: TLS handshake with %s for group %s: %w", address, l.group, err)
		}
		c = tc
	}
	b, err := hello{version: Version, clusterID: m.cfg.ClusterID, group: l.group, nodeID: m.cfg.NodeID}.marshal()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(hs))
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: handshake with %s for group %s: %w", address, l.group, err)
	}
	rp, err := readReply(c)
	if err != nil {
		c.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("connection closed before the reply: %w", err)
		}
		return nil, fmt.Errorf("transport: handshake with %s for group %s: %w", address, l.group, err)
	}
	if rp.status != StatusOK {
		c.Close()
		rerr := &RefusedError{Addr: string(address), Peer: rp.nodeID, Status: rp.status, Msg: rp.msg}
		m.log.Warn("cluster connection refused by peer", "group", l.group, "addr", string(address), "peer", rp.nodeID, "status", rp.status.String(), "msg", rp.msg)
		return nil, rerr
	}
	if tc, ok := c.(*tls.Conn); ok && !CertNames(tc.ConnectionState().PeerCertificates, rp.nodeID) {
		c.Close()
		return nil, fmt.Errorf("transport: %s answered as node %q, which its certificate does not name (its names: %s)", address, rp.nodeID, certNameList(tc.ConnectionState().PeerCertificates))
	}
	c.SetDeadline(time.Time{})
	if f := m.cfg.Faults; f != nil {
		if !f.connAllowed(m.cfg.NodeID, rp.nodeID) {
			c.Close()
			return nil, fmt.Errorf("transport: link %s<->%s blocked by fault injection", m.cfg.NodeID, rp.nodeID)
		}
		c = &faultConn{Conn: c, f: f, local: m.cfg.NodeID, remote: rp.nodeID}
	}
	dc := &dialedConn{Conn: c, l: l}
	l.dialedMu.Lock()
	defer l.dialedMu.Unlock()
	if l.dialed == nil {
		select {
		case <-l.done:
			c.Close()
			return nil, ErrClosed
		default:
			l.dialed = map[*dialedConn]struct{}{}
		}
	}
	l.dialed[dc] = struct{}{}
	return dc, nil
}

// advertisedAddr is a net.Addr for the advertised address, which may differ from the
// listener's (e.g. 0.0.0.0:7431 advertised as 10.0.0.5:7431).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
