package broker

import (
	"strings"
	"testing"
)

// Names and ids from clients: parsing never crashes, accepts only what
// it documents, and what it accepts formats back to the same text.
func FuzzNamesAndIDs(f *testing.F) {
	for _, s := range []string{"prod.shop.orders", "test.a.b", "a..b", "PROD.x.y", "x.y.z.w", "", ".", "test.a.b\x00",
		"0", "42", "-1", "007", "18446744073709551615", "18446744073709551616", "d1764151200000-k3x9", "d-1-0", "d9999999999999999999-zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateTopicName(s) == nil {
			parts := strings.Split(s, ".")
			if len(parts) < 3 || len(s) > 200 || strings.ToLower(s) != s {
				t.Fatalf("topic name %q accepted", s)
			}
			for _, p := range parts {
				if p == "" || !topicPartRE.MatchString(p) {
					t.Fatalf("topic name %q accepted with part %q", s, p)
				}
			}
			if environment(s) != parts[0] {
				t.Fatalf("environment(%q) = %q", s, environment(s))
			}
		}
		if validateGroupName(s) == nil && (s == "" || len(s) > 128 || strings.ContainsAny(s, " /\x00\n")) {
			t.Fatalf("group name %q accepted", s)
		}
		if off, err := ParseOffset(s); err == nil && FormatOffset(off) != s {
			t.Fatalf("message id %q parses to %d, which formats as %q", s, off, FormatOffset(off))
		}
		if due, seq, err := ParseDelayID(s); err == nil && FormatDelayID(due, seq) != s {
			t.Fatalf("delayed id %q parses to (%d, %d), which formats as %q", s, due, seq, FormatDelayID(due, seq))
		}
	})
}
