package seglog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/dmqio/dmq/internal/diskfs"
	"hash/crc32"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// indexEntry maps a record, by offset relative to its segment's base, to
// the byte position of its header in the segment file.
type indexEntry struct {
	rel uint32
	pos uint32
}

// indexBuilder decides where sparse index entries go: at the first record
// starting at least interval bytes after the previous entry. The record at
// position 0 is the implicit first entry and is not stored.
type indexBuilder struct {
	interval int64
	lastPos  int64
}

// want reports whether the record starting at pos gets an index entry, and
// if so records that it did.
func (b *indexBuilder) want(pos int64) bool {
	if pos-b.lastPos < b.interval {
		return false
	}
	b.lastPos = pos
	return true
}

// lookupIndex returns the greatest indexed record at or before relative
// offset rel: its relative offset and file position. Without such an
// entry it returns the implicit (0, 0).
func lookupIndex(entries []indexEntry, rel uint32) (uint32, int64) {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].rel > rel })
	if i == 0 {
		return 0, 0
	}
	e := entries[i-1]
	return e.rel, int64(e.pos)
}

// Index file layout; see the package documentation.
const (
	indexMagic      = "DMQSIDX1"
	indexHeaderSize = 40
	indexEntrySize  = 8
)

// indexFile is the decoded content of a sealed segment's .idx file.
type indexFile struct {
	base, next uint64
	size       int64
	interval   uint32
	entries    []indexEntry
}

// encode returns the .idx file content, trailing CRC included.
func (x *indexFile) encode() []byte {
	b := make([]byte, indexHeaderSize, indexHeaderSize+len(x.entries)*indexEntrySize+4)
	copy(b, indexMagic)
	binary.LittleEndian.PutUint64(b[8:], x.base)
	binary.LittleEndian.PutUint64(b[16:], x.next)
	binary.LittleEndian.PutUint64(b[24:], uint64(x.size))
	binary.LittleEndian.PutUint32(b[32:], uint32(len(x.entries)))
	binary.LittleEndian.PutUint32(b[36:], x.interval)
	for _, e := range x.entries {
		b = binary.LittleEndian.AppendUint32(b, e.rel)
		b = binary.LittleEndian.AppendUint32(b, e.pos)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeIndexFile parses and checks an .idx file's content: magic, CRC,
// length and ordering of the entries. It does not compare the result with
// the segment; the caller does.
func decodeIndexFile(b []byte) (*indexFile, error) {
	if len(b) < indexHeaderSize+4 {
		return nil, errors.New("index file too short")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("index file CRC mismatch")
	}
	if string(body[:8]) != indexMagic {
		return nil, errors.New("index file has bad magic")
	}
	x := &indexFile{
		base:     binary.LittleEndian.Uint64(body[8:]),
		next:     binary.LittleEndian.Uint64(body[16:]),
		size:     int64(binary.LittleEndian.Uint64(body[24:])),
		interval: binary.LittleEndian.Uint32(body[36:]),
	}
	if x.next < x.base || x.size < 0 {
		return nil, errors.New("index file has an impossible range")
	}
	count := int(binary.LittleEndian.Uint32(body[32:]))
	if len(body)-indexHeaderSize != count*indexEntrySize {
		return nil, fmt.Errorf("index file length does not match its %d entries", count)
	}
	x.entries = make([]indexEntry, count)
	p := body[indexHeaderSize:]
	for i := range x.entries {
		e := indexEntry{
			rel: binary.LittleEndian.Uint32(p[i*indexEntrySize:]),
			pos: binary.LittleEndian.Uint32(p[i*indexEntrySize+4:]),
		}
		if i > 0 && (e.rel <= x.entries[i-1].rel || e.pos <= x.entries[i-1].pos) {
			return nil, errors.New("index entries out of order")
		}
		if int64(e.pos) >= x.size || uint64(e.rel) >= x.next-x.base {
			return nil, errors.New("index entry beyond the segment")
		}
		x.entries[i] = e
	}
	return x, nil
}

// readIndexFile reads and decodes the .idx file at path.
func readIndexFile(fs vfs.FS, path string) (*indexFile, error) {
	b, err := diskfs.ReadFile(fs, path)
	if err != nil {
		return nil, err
	}
	return decodeIndexFile(b)
}

// writeIndexFile durably writes x to path: it writes path+".tmp", fsyncs
// it and renames it over path. The caller fsyncs the directory.
func writeIndexFile(fs vfs.FS, path string, x *indexFile) error {
	tmp := path + ".tmp"
	f, err := replaceFile(fs, tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(x.encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return fmt.Errorf("seglog: write index %s: %w", path, err)
	}
	return nil
}
