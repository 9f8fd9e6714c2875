package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A command is one entry of the shard's Raft log:
//
//	version (1 byte, 1) | kind (1 byte) | body
//
//	kindMeta    body = a Pebble batch representation (meta.Replicator)
//	kindAppend  body = topic | base uvarint | count uvarint | count × (len uvarint | payload)
//	kindAppendInTerm  body = term uvarint | the body of kindAppend
//	kindTrim    body = topic | before uvarint     (retention: segments wholly before)
//	kindRemove  body = topic                      (topic deleted or re-created: its log goes)
//
// where topic = len uvarint | bytes. An append names the offset its first record must get
// (base): the leader reserves offsets in log order, so a replica that already holds them
// (a restart replaying the log after its last snapshot) skips them, and one that does not
// appends them at exactly those offsets. An append made by a broker of one term
// (kindAppendInTerm) is refused by every replica alike if the leader appended it to the
// log in another term: the broker proposed after its leadership ended (lost, perhaps
// regained at once), with offsets reserved and a duplicate window built in the earlier
// term; the broker of the new term reserves anew.
const (
	commandVersion = 1

	kindMeta   byte = 1
	kindAppend byte = 2
	kindTrim   byte = 3
	kindRemove byte = 4
	// kindAppendInTerm decodes as kindAppend with its term set.
	kindAppendInTerm byte = 5
)

type command struct {
	kind     byte
	topic    string
	base     uint64 // kindAppend: offset of the first payload; kindTrim: the bound
	term     uint64 // kindAppend: the term it was proposed in (0: any)
	payloads [][]byte
	repr     []byte // kindMeta
}

func encodeMeta(repr []byte) []byte {
	out := make([]byte, 0, 2+len(repr))
	out = append(out, commandVersion, kindMeta)
	return append(out, repr...)
}

func appendTopic(dst []byte, topic string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	return append(dst, topic...)
}

func encodeAppend(topic string, base uint64, payloads [][]byte) []byte {
	return encodeAppendInTerm(0, topic, base, payloads)
}

// encodeAppendInTerm is an append valid only if committed in term (0: any term).
func encodeAppendInTerm(term uint64, topic string, base uint64, payloads [][]byte) []byte {
	n := 2 + 4*binary.MaxVarintLen64 + len(topic)
	for _, p := range payloads {
		n += binary.MaxVarintLen32 + len(p)
	}
	out := make([]byte, 0, n)
	if term == 0 {
		out = append(out, commandVersion, kindAppend)
	} else {
		out = append(out, commandVersion, kindAppendInTerm)
		out = binary.AppendUvarint(out, term)
	}
	out = appendTopic(out, topic)
	out = binary.AppendUvarint(out, base)
	out = binary.AppendUvarint(out, uint64(len(payloads)))
	for _, p := range payloads {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

func encodeTrim(topic string, before uint64) []byte {
	out := appendTopic([]byte{commandVersion, kindTrim}, topic)
	return binary.AppendUvarint(out, before)
}

func encodeRemove(topic string) []byte {
	return appendTopic([]byte{commandVersion, kindRemove}, topic)
}

var errShort = errors.New("truncated")

// decodeCommand parses an entry. Payloads alias data.
func decodeCommand(data []byte) (command, error) {
	if len(data) < 2 {
		return command{}, fmt.Errorf("replica: command of %d bytes", len(data))
	}
	if data[0] != commandVersion {
		return command{}, fmt.Errorf("replica: command version %d, this broker knows %d: upgrade it", data[0], commandVersion)
	}
	c := command{kind: data[1]}
	r := reader{b: data[2:]}
	switch c.kind {
	case kindMeta:
		c.repr = r.b
		return c, nil
	case kindAppend, kindAppendInTerm:
		if c.kind == kindAppendInTerm {
			c.kind, c.term = kindAppend, r.uvarint()
		}
		c.topic = r.topic()
		c.base = r.uvarint()
		n := r.uvarint()
		if r.err == nil && n > uint64(len(r.b)) {
			r.err = errShort
		}
		if r.err == nil {
			c.payloads = make([][]byte, 0, n)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			c.payloads = append(c.payloads, r.bytes(r.uvarint()))
		}
	case kindTrim:
		c.topic = r.topic()
		c.base = r.uvarint()
	case kindRemove:
		c.topic = r.topic()
	default:
		return command{}, fmt.Errorf("replica: unknown command kind %d: upgrade this broker", c.kind)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return command{}, fmt.Errorf("replica: bad command of kind %d: %w", c.kind, r.err)
	}
	return c, nil
}

// reader consumes a command body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) topic() string {
	t := string(r.bytes(r.uvarint()))
	if r.err == nil && t == "" {
		r.err = errors.New("empty topic")
	}
	return t
}
