package seglog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Record framing; see the package documentation.
const (
	headerSize = 16 // length(4) + crc(4) + offset(8)

	// maxRecordLimit is the hard ceiling for Options.MaxRecordBytes. It is
	// also what recovery and reads consider an "absurd" length: a smaller
	// MaxRecordBytes at reopen must not make older, larger records look
	// corrupt.
	maxRecordLimit = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded fixed-size prefix of a record.
type header struct {
	length uint32 // payload length
	crc    uint32 // CRC-32C over offset ++ payload
	offset uint64
}

// parseHeader decodes b[:headerSize].
func parseHeader(b []byte) header {
	_ = b[headerSize-1]
	return header{
		length: binary.LittleEndian.Uint32(b[0:4]),
		crc:    binary.LittleEndian.Uint32(b[4:8]),
		offset: binary.LittleEndian.Uint64(b[8:16]),
	}
}

// zero reports whether the header is all zero bytes, which is never a
// valid record (the CRC of an 8-byte zero offset is not zero): it is what
// a preallocated or zero-filled tail looks like.
func (h header) zero() bool { return h.length == 0 && h.crc == 0 && h.offset == 0 }

// recordSize is the framed size of a record with an n-byte payload.
func recordSize(n int) int { return headerSize + n }

// appendRecord appends the framed record (offset, payload) to dst.
func appendRecord(dst []byte, offset uint64, payload []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, headerSize+len(payload))
	dst = dst[:n+headerSize]
	binary.LittleEndian.PutUint32(dst[n:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(dst[n+8:], offset)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[n+4:], crc32.Checksum(dst[n+8:], castagnoli))
	return dst
}

// checkHeader validates what can be validated from the header alone,
// given the expected offset and the number of bytes available from the
// header's position to the end of the data. It returns "" or the reason
// the record is invalid.
func checkHeader(h header, want uint64, avail int64) string {
	switch {
	case h.zero():
		return "zero-filled header"
	case h.length > maxRecordLimit:
		return fmt.Sprintf("absurd length %d", h.length)
	case h.offset != want:
		return fmt.Sprintf("offset mismatch: header says %d", h.offset)
	case int64(recordSize(int(h.length))) > avail:
		return fmt.Sprintf("torn record: length %d but only %d bytes follow the header",
			h.length, avail-headerSize)
	}
	return ""
}

// checkCRC reports whether rec (one whole framed record, header included)
// carries a correct CRC.
func checkCRC(h header, rec []byte) bool {
	return crc32.Checksum(rec[8:headerSize+int(h.length)], castagnoli) == h.crc
}
