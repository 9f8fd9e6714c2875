package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// magic opens every hello and reply, so that a stray client (or another protocol on the
// wrong port) is told apart from a DMQ node at once.
var magic = [4]byte{'D', 'M', 'Q', 'C'}

// Version is the handshake protocol version this package speaks.
const Version = 1

// Status is the acceptor's answer to a hello.
type Status uint8

// Handshake statuses. Values are part of the wire format: append only.
const (
	StatusOK              Status = 0 // connection accepted for the named group
	StatusClusterMismatch Status = 1 // the hello names another cluster id
	StatusUnknownGroup    Status = 2 // the acceptor hosts no group of that name
	StatusBadVersion      Status = 3 // the acceptor does not speak the hello's version
	StatusMalformed       Status = 4 // the hello could not be parsed
	StatusWrongIdentity   Status = 5 // the dialer's TLS certificate does not name the node id it sent
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusClusterMismatch:
		return "cluster id mismatch"
	case StatusUnknownGroup:
		return "unknown group"
	case StatusBadVersion:
		return "unsupported handshake version"
	case StatusMalformed:
		return "malformed hello"
	case StatusWrongIdentity:
		return "certificate names another node"
	}
	return fmt.Sprintf("status %d", uint8(s))
}

// ErrRefused is matched (errors.Is) by every *RefusedError.
var ErrRefused = errors.New("connection refused by peer")

// RefusedError is returned by Layer.Dial when the acceptor refused the handshake.
type RefusedError struct {
	Addr   string // address dialed
	Peer   string // acceptor's node id, when it sent one
	Status Status
	Msg    string // acceptor's explanation, e.g. the cluster id it expected
}

func (e *RefusedError) Error() string {
	peer := e.Peer
	if peer == "" {
		peer = "?"
	}
	return fmt.Sprintf("transport: %s (node %s) refused the connection: %s: %s", e.Addr, peer, e.Status, e.Msg)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// hello is the dialer's opening message.
type hello struct {
	version   uint8
	clusterID string
	group     string
	nodeID    string
}

// reply is the acceptor's answer.
type reply struct {
	status Status
	nodeID string
	msg    string
}

// maxField is the longest string a one-byte length prefix can carry.
const maxField = 255

func appendField(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

func (h hello) marshal() ([]byte, error) {
	for _, f := range []string{h.clusterID, h.group, h.nodeID} {
		if len(f) > maxField {
			return nil, fmt.Errorf("transport: handshake field %.20q... is %d bytes, more than %d", f, len(f), maxField)
		}
	}
	b := make([]byte, 0, 8+len(h.clusterID)+len(h.group)+len(h.nodeID))
	b = append(b, magic[:]...)
	b = append(b, h.version)
	b = appendField(b, h.clusterID)
	b = appendField(b, h.group)
	b = appendField(b, h.nodeID)
	return b, nil
}

func readField(r io.Reader) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func readMagic(r io.Reader) error {
	var m [4]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return err
	}
	if m != magic {
		return fmt.Errorf("bad magic %q, want %q (not a DMQ cluster connection)", m[:], magic[:])
	}
	return nil
}

// readHello parses a hello. A version it does not know is returned with an empty rest, so
// that the caller can answer StatusBadVersion instead of misreading the fields. It reads
// unbuffered: whatever follows the hello belongs to Raft.
func readHello(r io.Reader) (hello, error) {
	var h hello
	if err := readMagic(r); err != nil {
		return h, err
	}
	var v [1]byte
	if _, err := io.ReadFull(r, v[:]); err != nil {
		return h, err
	}
	h.version = v[0]
	if h.version != Version {
		return h, nil
	}
	var err error
	if h.clusterID, err = readField(r); err != nil {
		return h, err
	}
	if h.group, err = readField(r); err != nil {
		return h, err
	}
	if h.nodeID, err = readField(r); err != nil {
		return h, err
	}
	return h, nil
}

func (rp reply) marshal() []byte {
	msg := rp.msg
	if len(msg) > 0xffff {
		msg = msg[:0xffff]
	}
	nodeID := rp.nodeID
	if len(nodeID) > maxField {
		nodeID = nodeID[:maxField]
	}
	b := make([]byte, 0, 8+len(nodeID)+len(msg))
	b = append(b, magic[:]...)
	b = append(b, byte(rp.status))
	b = appendField(b, nodeID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

func readReply(r io.Reader) (reply, error) {
	var rp reply
	if err := readMagic(r); err != nil {
		return rp, err
	}
	var s [1]byte
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return rp, err
	}
	rp.status = Status(s[0])
	var err error
	if rp.nodeID, err = readField(r); err != nil {
		return rp, err
	}
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return rp, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return rp, err
	}
	rp.msg = string(msg)
	return rp, nil
}
