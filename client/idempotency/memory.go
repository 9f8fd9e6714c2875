package idempotency

import (
	"context"
	"sync"
)

// MemoryStore is a Store in memory, for tests and examples: it forgets
// everything when the process ends and never expires keys.
type MemoryStore struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{keys: map[string]struct{}{}} }

// Seen reports whether key was recorded.
func (s *MemoryStore) Seen(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok, nil
}

// Record remembers key.
func (s *MemoryStore) Record(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[key] = struct{}{}
	return nil
}
