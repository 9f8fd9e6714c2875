package idempotency

import (
	"context"
	"sync"
)

// keyLocks is a mutex per key. Only keys being processed have an entry, so
// its size is bounded by the number of concurrent deliveries.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

// keyLock is held by whoever put the token into ch; refs counts holders and
// waiters so the last one removes it from the map.
type keyLock struct {
	ch   chan struct{}
	refs int
}

func newKeyLocks() *keyLocks { return &keyLocks{locks: map[string]*keyLock{}} }

// lock waits until key is free or ctx is done, and returns the function that
// releases it.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	kl := l.locks[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.locks[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	select {
	case kl.ch <- struct{}{}:
		return func() {
			<-kl.ch
			l.release(key, kl)
		}, nil
	case <-ctx.Done():
		l.release(key, kl)
		return nil, ctx.Err()
	}
}

func (l *keyLocks) release(key string, kl *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl.refs--
	if kl.refs == 0 {
		delete(l.locks, key)
	}
}

// size is the number of keys locked or waited for.
func (l *keyLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
