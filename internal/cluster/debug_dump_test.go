package cluster

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func debugDump(mem *vfs.MemFS, dir string) string {
	var b strings.Builder
	names, _ := mem.List(dir)
	for _, n := range names {
		p := mem.PathJoin(dir, n)
		buf, err := readFileFS(mem, p)
		fmt.Fprintf(&b, "%s: %d bytes %v\n", n, len(buf), err)
		if n == walMetaFile && len(buf) > 16 {
			fmt.Fprintf(&b, "  %s\n", buf[16:])
		}
		if strings.HasSuffix(n, ".wal") && len(buf) >= 32 {
			off := 32
			for off+8 <= len(buf) {
				typ := buf[off]
				l := binary.LittleEndian.Uint32(buf[off+4:])
				if typ == 0 {
					fmt.Fprintf(&b, "  @%d zero\n", off)
					break
				}
				fmt.Fprintf(&b, "  @%d type %d len/crc %d\n", off, typ, l)
				if typ > 3 {
					break
				}
				if typ == 3 {
					off += 8
					continue
				}
				off += 8 + int(l) + (8-int(l)%8)&7
			}
		}
	}
	return b.String()
}

func metaSummary(fs vfs.FS, dir string) string {
	st, _, err := readWalMeta(fs, fs.PathJoin(dir, walMetaFile))
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "next=%d", st.NextSegmentID)
	for _, s := range st.Segments[max(0, len(st.Segments)-2):] {
		fmt.Fprintf(&b, " %d@%d-%d", s.ID, s.BaseIndex, s.MaxIndex)
	}
	names, _ := fs.List(dir)
	fmt.Fprintf(&b, " files=%v", names)
	return b.String()
}
