package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

const logVersion = 1

// fixedLen is the size of an encoded entry without its data and extensions.
const fixedLen = 1 + 8 + 8 + 1 + 8 + 4 + 4

func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, fixedLen+len(l.Data)+len(l.Extensions))
	b = append(b, logVersion)
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Extensions)))
	return append(b, l.Extensions...)
}

var errShort = errors.New("truncated")

// decodeLog decodes b into l. Data and Extensions are copied: b belongs to a bbolt
// transaction and is invalid once it ends.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < fixedLen {
		return errShort
	}
	if b[0] != logVersion {
		return fmt.Errorf("unknown entry version %d", b[0])
	}
	l.Index = binary.BigEndian.Uint64(b[1:])
	l.Term = binary.BigEndian.Uint64(b[9:])
	l.Type = raft.LogType(b[17])
	if at := int64(binary.BigEndian.Uint64(b[18:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	} else {
		l.AppendedAt = time.Time{}
	}
	rest := b[26:]
	var err error
	if l.Data, rest, err = field(rest); err != nil {
		return err
	}
	if l.Extensions, rest, err = field(rest); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

func field(b []byte) (v, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errShort
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) < uint64(n) {
		return nil, nil, errShort
	}
	if n > 0 {
		v = append([]byte(nil), b[:n]...)
	}
	return v, b[n:], nil
}
