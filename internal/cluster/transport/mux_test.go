package transport

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func newMux(t *testing.T, cluster, node string, f *Faults) *Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	m, err := New(Config{ClusterID: cluster, NodeID: node, Listener: ln, Faults: f})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	m.Run()
	t.Cleanup(func() { m.Close() })
	return m
}

func layer(t *testing.T, m *Mux, group string) *Layer {
	t.Helper()
	l, err := m.Layer(group)
	if err != nil {
		t.Fatalf("Layer(%s): %v", group, err)
	}
	return l
}

// acceptEcho echoes one message on each connection l accepts, prefixed by the group name.
func acceptEcho(l *Layer, group string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				c.Write(append([]byte(group+":"), b...))
			}()
		}
	}()
}

func roundTrip(t *testing.T, l *Layer, addr, msg string) (string, error) {
	t.Helper()
	c, err := l.Dial(raft.ServerAddress(addr), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestMuxRoutesEachGroupOnOnePort: two groups share one listener; each connection reaches
// the group its hello names.
func TestMuxRoutesEachGroupOnOnePort(t *testing.T) {
	srv := newMux(t, "c", "n1", nil)
	acceptEcho(layer(t, srv, "meta"), "meta")
	acceptEcho(layer(t, srv, "s0"), "s0")
	cli := newMux(t, "c", "n2", nil)
	for _, group := range []string{"meta", "s0"} {
		got, err := roundTrip(t, layer(t, cli, group), srv.Addr(), "hello")
		if err != nil || got != group+":hello" {
			t.Fatalf("round trip on group %s = %q, %v; want %q", group, got, err, group+":hello")
		}
	}
	if _, err := srv.Layer("meta"); err == nil {
		t.Fatalf("a second layer for group meta was allowed")
	}
}

// TestMuxRefusals: wrong cluster, unknown group, closed group, and a stray client.
func TestMuxRefusals(t *testing.T) {
	srv := newMux(t, "prod", "n1", nil)
	closed := layer(t, srv, "gone")
	closed.Close()
	layer(t, srv, "meta")

	for _, tc := range []struct {
		name, cluster, group string
		want                 Status
	}{
		{"wrong cluster", "test", "meta", StatusClusterMismatch},
		{"unknown group", "prod", "s9", StatusUnknownGroup},
		{"closed group", "prod", "gone", StatusUnknownGroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := newMux(t, tc.cluster, "n2", nil)
			_, err := layer(t, cli, tc.group).Dial(raft.ServerAddress(srv.Addr()), 2*time.Second)
			var re *RefusedError
			if !errors.As(err, &re) || re.Status != tc.want || !errors.Is(err, ErrRefused) {
				t.Fatalf("Dial = %v, want a refusal with status %q", err, tc.want)
			}
		})
	}
	t.Run("stray client", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("a stray client got %q, want the connection closed", b)
		}
	})
}

// TestFaultsBlockDelayHeal: a blocked link refuses new connections and breaks an
// established one; a delay slows writes; Heal restores everything.
func TestFaultsBlockDelayHeal(t *testing.T) {
	f := NewFaults()
	srv := newMux(t, "c", "n1", f)
	acceptEcho(layer(t, srv, "meta"), "meta")
	cli := newMux(t, "c", "n2", f)
	l := layer(t, cli, "meta")

	if got, err := roundTrip(t, l, srv.Addr(), "hello"); err != nil || got != "meta:hello" {
		t.Fatalf("open link: %q, %v", got, err)
	}

	// An established connection breaks when its link is cut.
	c, err := l.Dial(raft.ServerAddress(srv.Addr()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.Block("n2", "n1")
	if _, err := c.Write([]byte("hello")); err == nil || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("write on a blocked link = %v, want a blocked error", err)
	}
	c.Close()

	// One direction blocked is enough to refuse a new connection, either way round.
	if _, err := roundTrip(t, l, srv.Addr(), "hello"); err == nil {
		t.Fatalf("dial n2->n1 with n2->n1 blocked succeeded")
	}
	f.Heal()
	f.Block("n1", "n2")
	if _, err := roundTrip(t, l, srv.Addr(), "hello"); err == nil {
		t.Fatalf("dial n2->n1 with n1->n2 blocked succeeded")
	}
	f.Heal()
	f.Partition("n1")
	if !f.Blocked("n1", "n2") || !f.Blocked("n2", "n1") {
		t.Fatalf("Partition(n1) left a link between n1 and n2 open")
	}
	f.Heal()

	f.Delay("n2", "n1", 150*time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(t, l, srv.Addr(), "hello"); err != nil || got != "meta:hello" {
		t.Fatalf("delayed link: %q, %v", got, err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("round trip over a 150ms link took %v", took)
	}
	f.Heal()
	if got, err := roundTrip(t, l, srv.Addr(), "hello"); err != nil || got != "meta:hello" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

// TestHandshakeRoundTrip: encode/decode of hello and reply, and rejection of bad input.
func TestHandshakeRoundTrip(t *testing.T) {
	h := hello{version: Version, clusterID: "prod", group: "s12", nodeID: "n3"}
	b, err := h.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := readHello(strings.NewReader(string(b)))
	if err != nil || got != h {
		t.Fatalf("readHello(marshal(%+v)) = %+v, %v", h, got, err)
	}
	rp := reply{status: StatusUnknownGroup, nodeID: "n1", msg: "no such group"}
	gotR, err := readReply(strings.NewReader(string(rp.marshal())))
	if err != nil || gotR != rp {
		t.Fatalf("readReply(marshal(%+v)) = %+v, %v", rp, gotR, err)
	}
	if _, err := readHello(strings.NewReader("HTTP/1.1 200")); err == nil {
		t.Fatalf("readHello accepted a non-DMQ opening")
	}
	if _, err := readHello(strings.NewReader(string(b[:len(b)-1]))); err == nil {
		t.Fatalf("readHello accepted a truncated hello")
	}
	if _, err := (hello{version: Version, clusterID: strings.Repeat("x", 256)}).marshal(); err == nil {
		t.Fatalf("marshal accepted a 256-byte cluster id")
	}
}

// TestCloseDoesNotWaitForSilentDialers: a connection that never sends its hello does not
// hold Close for the handshake timeout.
func TestCloseDoesNotWaitForSilentDialers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{ClusterID: "c", NodeID: "n1", Listener: ln, HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m.Run()
	c, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitPending(t, m)
	start := time.Now()
	m.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Close took %v with a silent dialer", took)
	}
}

func waitPending(t *testing.T, m *Mux) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		n := len(m.mu.pending)
		m.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the silent connection was never accepted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseEndsCallsToASilentPeer: a call reading from a peer that accepted the group's
// connection and then stopped answering (a SIGSTOPped node) ends when the layer closes,
// not at its deadline; a later Dial is refused.
func TestCloseEndsCallsToASilentPeer(t *testing.T) {
	srv := newMux(t, "c", "n1", nil)
	silent := layer(t, srv, "s0")
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // holds the connection and never answers
		}
	}()
	l := layer(t, newMux(t, "c", "n2", nil), "s0")
	c, err := l.Dial(raft.ServerAddress(srv.Addr()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	l.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("the read returned data from a silent peer")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("the read ended %v after Close", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read still waits 5 s after the layer closed")
	}
	if _, err := l.Dial(raft.ServerAddress(srv.Addr()), time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close = %v, want ErrClosed", err)
	}
}
