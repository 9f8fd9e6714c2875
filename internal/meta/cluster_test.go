package meta

import (
	"testing"
)

// The replicas per shard: absent until recorded, then kept across a reopen.
func TestReplicasRecorded(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok, err := s.Replicas(); err != nil || ok || n != 0 {
		t.Fatalf("a new store has replicas %d, recorded %t, %v", n, ok, err)
	}
	if err := s.SetReplicas(3); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, ok, err := s.Replicas(); err != nil || !ok || n != 3 {
		t.Fatalf("after a reopen: replicas %d, recorded %t, %v; want 3", n, ok, err)
	}
	if err := s.SetReplicas(0); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := s.Replicas(); err != nil || !ok || n != 0 {
		t.Fatalf("every node (0) recorded: %d, %t, %v", n, ok, err)
	}
}
