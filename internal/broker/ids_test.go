package broker

import "testing"

func TestFormatOffsetsMatchesFormatOffset(t *testing.T) {
	offs := []uint64{0, 7, 10, 999, 1 << 40, 18446744073709551615, 42}
	ids := FormatOffsets(len(offs), func(i int) (uint64, bool) { return offs[i], i != 6 })
	for i, off := range offs {
		want := FormatOffset(off)
		if i == 6 {
			want = ""
		}
		if ids[i] != want {
			t.Fatalf("id %d = %q, want %q", i, ids[i], want)
		}
	}
	if got := FormatOffsets(0, nil); len(got) != 0 {
		t.Fatalf("no offsets gave %q", got)
	}
}
