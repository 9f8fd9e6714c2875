package idempotency

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// TestStoreContract runs the Store contract against every implementation.
func TestStoreContract(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(*testing.T) Store { return NewMemoryStore() },
		"file": func(t *testing.T) Store {
			s, err := OpenFileStore(filepath.Join(t.TempDir(), "idem.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			if seen, err := s.Seen(ctx, "k"); err != nil || seen {
				t.Fatalf("Seen(k) on an empty store = %v, %v; want false, nil", seen, err)
			}
			for i := 0; i < 2; i++ {
				if err := s.Record(ctx, "k"); err != nil {
					t.Fatalf("Record(k) #%d = %v", i+1, err)
				}
			}
			if seen, err := s.Seen(ctx, "k"); err != nil || !seen {
				t.Fatalf("Seen(k) after Record = %v, %v; want true, nil", seen, err)
			}
			if seen, _ := s.Seen(ctx, "k2"); seen {
				t.Fatal("Seen(k2) = true, only k was recorded")
			}
			var wg sync.WaitGroup
			for i := 0; i < 64; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Record(ctx, fmt.Sprint("c", i)); err != nil {
						t.Errorf("concurrent Record: %v", err)
					}
				}()
			}
			wg.Wait()
			for i := 0; i < 64; i++ {
				if seen, err := s.Seen(ctx, fmt.Sprint("c", i)); err != nil || !seen {
					t.Fatalf("Seen(c%d) after concurrent Records = %v, %v; want true, nil", i, seen, err)
				}
			}
		})
	}
}
