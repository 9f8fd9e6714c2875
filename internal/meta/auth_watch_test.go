package meta

import (
	"log/slog"
	"testing"
)

// A replicated write to applications, users or sessions tells the watcher; others do not.
func TestOnAuthReplicatedSeesOnlyAuthKeys(t *testing.T) {
	s, err := Open(t.TempDir(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	calls := 0
	s.OnAuthReplicated(func() { calls++ })
	repr := func(key []byte) []byte {
		b := s.db.NewBatch()
		defer b.Close()
		if err := b.Set(key, []byte("{}"), nil); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), b.Repr()...)
	}
	for i, c := range []struct {
		key  []byte
		want int
	}{
		{[]byte("tp/dev.a.b"), 0},
		{appKey("shop"), 1},
		{userKey("alice"), 2},
		{sessionKey("abc"), 3},
		{[]byte("au"), 3},
	} {
		if err := s.ApplyReplicated(uint64(i+1), repr(c.key)); err != nil {
			t.Fatal(err)
		}
		if calls != c.want {
			t.Fatalf("after a write of %q: %d calls, want %d", c.key, calls, c.want)
		}
	}
}
