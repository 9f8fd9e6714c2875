package meta

import (
	"slices"
	"testing"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTopicsGroupsAndCursorsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, name := range []string{"test.a.b", "test.a.b.c", "test.a.c"} {
		if err := s.PutTopic(Topic{Name: name, Owner: "o"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutGroup(Group{Topic: "test.a.b", Name: "g", Mode: "cluster"}, []Cursor{{Member: "", Floor: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutGroup(Group{Topic: "test.a.b.c", Name: "g", Mode: "broadcast"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursors("test.a.b", "g", []CursorUpdate{{Member: "", OldFloor: 3, NewFloor: 5, Acked: []uint64{7, 9}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursors("test.a.b", "g", []CursorUpdate{{Member: "", OldFloor: 5, NewFloor: 8, Acked: []uint64{10}, Dropped: []uint64{7}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	ts, _ := s.Topics()
	if len(ts) != 3 || ts[0].Name != "test.a.b" || ts[0].Owner != "o" {
		t.Fatalf("Topics = %+v", ts)
	}
	cs, err := s.Cursors("test.a.b", "g")
	if err != nil || len(cs) != 1 {
		t.Fatalf("Cursors = %+v, %v", cs, err)
	}
	if cs[0].Floor != 8 || !slices.Equal(cs[0].Acked, []uint64{9, 10}) {
		t.Fatalf("cursor = floor %d acked %v, want floor 8 acked [9 10] (7 fell below the floor)", cs[0].Floor, cs[0].Acked)
	}

	// Deleting a topic removes its groups and cursors, not a topic whose
	// name it prefixes.
	if err := s.DeleteTopic("test.a.b"); err != nil {
		t.Fatal(err)
	}
	ts, _ = s.Topics()
	if len(ts) != 2 || ts[0].Name != "test.a.b.c" {
		t.Fatalf("after delete Topics = %+v, want test.a.b.c and test.a.c", ts)
	}
	if gs, _ := s.Groups("test.a.b"); len(gs) != 0 {
		t.Fatalf("groups of deleted topic remain: %+v", gs)
	}
	if cs, _ := s.Cursors("test.a.b", "g"); len(cs) != 0 {
		t.Fatalf("cursors of deleted topic remain: %+v", cs)
	}
	if gs, _ := s.Groups("test.a.b.c"); len(gs) != 1 {
		t.Fatalf("group of test.a.b.c lost: %+v", gs)
	}
}
