package e2e

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/dmqtest"
)

// HTTP/2 frame types this test reads and writes (RFC 9113, section 6).
const (
	frameSettings = 0x4
	framePing     = 0x6
	frameGoAway   = 0x7
)

// writeFrame writes one HTTP/2 frame on stream 0.
func writeFrame(t *testing.T, c net.Conn, typ, flags byte, payload []byte) {
	t.Helper()
	h := make([]byte, 9, 9+len(payload))
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	if _, err := c.Write(append(h, payload...)); err != nil {
		t.Fatalf("write frame %d: %v", typ, err)
	}
}

// TestServerAllowsTheSDKsKeepalivePings pings the broker as the SDK's keepalive does,
// on a connection without calls, and checks the broker answers every ping instead of
// closing the connection with "too_many_pings" (gRPC's default policy refuses pings
// more often than every 5 minutes, and any without a call in progress). The SDK pings
// a connection that received nothing for 10 s (client/watchdog.go); the broker allows
// one every 5 s. Raw HTTP/2: the SDK cannot ping more often than 10 s.
func TestServerAllowsTheSDKsKeepalivePings(t *testing.T) {
	s := dmqtest.Start(t, "", nil)
	c, err := net.Dial("tcp", s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	writeFrame(t, c, frameSettings, 0, nil)

	acks := make(chan uint64, 8)
	goAway := make(chan string, 1)
	go func() {
		h := make([]byte, 9)
		for {
			if _, err := io.ReadFull(c, h); err != nil {
				return
			}
			payload := make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
			if _, err := io.ReadFull(c, payload); err != nil {
				return
			}
			switch {
			case h[3] == framePing && h[4]&0x1 != 0:
				acks <- binary.BigEndian.Uint64(payload)
			case h[3] == frameGoAway && len(payload) >= 8:
				goAway <- string(payload[8:]) // last stream id and code first, then debug data
				return
			case h[3] == frameSettings && h[4]&0x1 == 0:
				c.Write([]byte{0, 0, 0, frameSettings, 0x1, 0, 0, 0, 0}) // ack the server's settings
			}
		}
	}()

	// gRPC's server counts a ping that comes sooner than its policy allows as a strike
	// and closes the connection at the third: four pings make three intervals.
	const pings, every = 4, 5200 * time.Millisecond
	for i := range uint64(pings) {
		if i > 0 {
			time.Sleep(every)
		}
		writeFrame(t, c, framePing, 0, binary.BigEndian.AppendUint64(nil, i))
		select {
		case n := <-acks:
			if n != i {
				t.Fatalf("ping %d answered with %d", i, n)
			}
		case msg := <-goAway:
			t.Fatalf("the broker closed the connection at ping %d (one every %v, no call in progress): GOAWAY %q", i, every, msg)
		case <-time.After(5 * time.Second):
			t.Fatalf("ping %d not answered", i)
		}
	}
	select {
	case msg := <-goAway:
		t.Fatalf("the broker closed the connection after %d pings: GOAWAY %q", pings, msg)
	case <-time.After(200 * time.Millisecond):
	}
}
