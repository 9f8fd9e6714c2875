// Package message defines how one published message is encoded as the payload
// of a log record.
//
// Format (version 1), all integers as unsigned varints unless noted:
//
//	version        1 byte (= 1)
//	published_at   Unix milliseconds
//	key            length, bytes
//	client_msg_id  length, bytes
//	headers        count, then count × (key length, key, value length, value)
//	body           length, bytes
//
// The log record around it carries the offset and the CRC; this package only
// turns fields into bytes and back, and rejects payloads that do not parse.
package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

const version1 = 1

// ErrMalformed is returned by Decode for a payload that does not parse.
var ErrMalformed = errors.New("message: malformed payload")

// Message is the stored form of a published message.
type Message struct {
	PublishedAtMs   int64
	Key             string
	ClientMessageID string
	Headers         map[string]string
	Body            []byte

	// DeliverAtMs asks for delivery no earlier than this time (Unix ms). It
	// routes the publish and is not part of the stored record.
	DeliverAtMs int64
}

// EncodedSize returns an upper bound of the encoded size of m.
func (m *Message) EncodedSize() int {
	n := 1 + 3*binary.MaxVarintLen64 + len(m.Key) + len(m.ClientMessageID) + binary.MaxVarintLen64 + len(m.Body)
	for k, v := range m.Headers {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// Append appends the encoding of m to dst and returns the extended slice.
// Headers are written in key order so equal messages encode equally.
func Append(dst []byte, m *Message) []byte {
	dst = append(dst, version1)
	dst = binary.AppendUvarint(dst, uint64(m.PublishedAtMs))
	dst = appendString(dst, m.Key)
	dst = appendString(dst, m.ClientMessageID)
	dst = binary.AppendUvarint(dst, uint64(len(m.Headers)))
	if len(m.Headers) > 0 {
		keys := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, m.Headers[k])
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Body)))
	return append(dst, m.Body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Decode parses a payload written by Append. The returned Body aliases p.
func Decode(p []byte) (Message, error) {
	var m Message
	d := decoder{p: p}
	if v := d.byte(); v != version1 {
		return m, fmt.Errorf("%w: unknown version %d", ErrMalformed, v)
	}
	m.PublishedAtMs = int64(d.uvarint())
	m.Key = string(d.bytes())
	m.ClientMessageID = string(d.bytes())
	if n := d.uvarint(); n > 0 {
		if n > uint64(len(d.p)) {
			return m, fmt.Errorf("%w: header count %d", ErrMalformed, n)
		}
		m.Headers = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := string(d.bytes())
			m.Headers[k] = string(d.bytes())
		}
	}
	m.Body = d.bytes()
	if d.err != nil {
		return Message{}, d.err
	}
	if len(d.p) != 0 {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.p))
	}
	return m, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.p) < 1 {
		d.fail("truncated")
		return 0
	}
	b := d.p[0]
	d.p = d.p[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.p)) {
		d.fail("length beyond end")
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, why)
	}
}
