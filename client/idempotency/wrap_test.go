package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
)

// counter is a handler that counts its calls per message key.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
	fail  error // returned by every call while set
}

func newCounter() *counter { return &counter{calls: map[string]int{}} }

func (c *counter) handle(_ context.Context, m *client.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[m.Key+"|"+m.ID]++
	return c.fail
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.calls {
		n += k
	}
	return n
}

func msg(topic, key, id string) *client.Message {
	return &client.Message{Topic: topic, Key: key, ID: id, Body: []byte("body-" + id)}
}

func TestWrapRunsHandlerOnceForRepeatedKey(t *testing.T) {
	h := newCounter()
	w := Wrap(NewMemoryStore(), h.handle)
	// Two messages with the same business key (distinct broker ids) and a
	// redelivery of the first.
	for _, m := range []*client.Message{msg("t.a.b", "order-1", "1"), msg("t.a.b", "order-1", "2"), msg("t.a.b", "order-1", "1")} {
		if err := w(context.Background(), m); err != nil {
			t.Fatalf("wrapped handler(%s/%s) = %v, want nil (ack)", m.Key, m.ID, err)
		}
	}
	if got := h.total(); got != 1 {
		t.Fatalf("handler ran %d times for key order-1, want 1 (calls %v)", got, h.calls)
	}
}

func TestWrapDoesNotRecordFailure(t *testing.T) {
	store := NewMemoryStore()
	h := newCounter()
	boom := errors.New("payment service down")
	h.fail = boom
	w := Wrap(store, h.handle)
	m := msg("t.a.b", "order-1", "1")
	if err := w(context.Background(), m); err != boom {
		t.Fatalf("wrapped handler = %v, want the handler's error unchanged", err)
	}
	if seen, _ := store.Seen(context.Background(), DefaultKey(m)); seen {
		t.Fatal("a failed message was recorded as processed")
	}
	h.fail = nil
	for i := 0; i < 2; i++ {
		if err := w(context.Background(), m); err != nil {
			t.Fatalf("redelivery %d = %v, want nil", i+1, err)
		}
	}
	if got := h.total(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (the failure and the first redelivery)", got)
	}
}

func TestWrapPanicIsNotRecordedAndReleasesTheKey(t *testing.T) {
	store := NewMemoryStore()
	calls := 0
	w := Wrap(store, func(context.Context, *client.Message) error {
		calls++
		if calls == 1 {
			panic("bug")
		}
		return nil
	})
	m := msg("t.a.b", "order-1", "1")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the handler's panic did not reach the caller (the SDK turns it into a nack)")
			}
		}()
		w(context.Background(), m)
	}()
	done := make(chan error, 1)
	go func() { done <- w(context.Background(), m) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("redelivery after panic = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("redelivery after a panic blocked: the key lock was not released")
	}
	if calls != 2 {
		t.Fatalf("handler ran %d times, want 2", calls)
	}
}

func TestWrapKeysByMessageIDWithoutKeyAndByTopic(t *testing.T) {
	store := NewMemoryStore()
	h := newCounter()
	w := Wrap(store, h.handle)
	deliveries := []*client.Message{
		msg("t.a.b", "", "7"), msg("t.a.b", "", "7"), // a redelivery of a keyless message
		msg("t.a.b", "", "8"),        // another keyless message
		msg("t.a.c", "", "7"),        // same id, other topic
		msg("t.a.b", "7", "9"),       // a key that equals an id
		msg("t.a.c", "order-1", "1"), // same key, two topics
		msg("t.a.b", "order-1", "2"),
	}
	for _, m := range deliveries {
		if err := w(context.Background(), m); err != nil {
			t.Fatalf("wrapped handler(%s %s/%s) = %v", m.Topic, m.Key, m.ID, err)
		}
	}
	if got := h.total(); got != len(deliveries)-1 {
		t.Fatalf("handler ran %d times, want %d (all but the redelivery); calls %v", got, len(deliveries)-1, h.calls)
	}
	for _, key := range []string{"t.a.b/id/7", "t.a.b/id/8", "t.a.c/id/7", "t.a.b/key/7", "t.a.c/key/order-1"} {
		if seen, _ := store.Seen(context.Background(), key); !seen {
			t.Errorf("store has not seen %q", key)
		}
	}
}

func TestWrapKeyByAndNamespace(t *testing.T) {
	store := NewMemoryStore()
	h := newCounter()
	w := Wrap(store, h.handle, KeyBy(func(m *client.Message) string { return m.Headers["op"] }), Namespace("billing"))
	m1 := &client.Message{Topic: "t.a.b", ID: "1", Key: "order-1", Headers: map[string]string{"op": "order-1:created"}}
	m2 := &client.Message{Topic: "t.a.b", ID: "2", Key: "order-1", Headers: map[string]string{"op": "order-1:paid"}}
	for _, m := range []*client.Message{m1, m2, m1} {
		if err := w(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.total(); got != 2 {
		t.Fatalf("handler ran %d times, want 2 (one per op header)", got)
	}
	if seen, _ := store.Seen(context.Background(), "billing/order-1:paid"); !seen {
		t.Error(`store has not seen "billing/order-1:paid"`)
	}
	err := w(context.Background(), &client.Message{Topic: "t.a.b", ID: "3"})
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("message without the op header = %v, want ErrNoKey", err)
	}
}

// Concurrent deliveries of one key, through two handlers wrapped apart (two
// consumers of a group in one process), run the handler once.
func TestWrapConcurrentDeliveriesOfOneKeyRunHandlerOnce(t *testing.T) {
	store := NewMemoryStore()
	var running, maxRunning, calls atomic.Int32
	h := func(context.Context, *client.Message) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := maxRunning.Load()
			if n <= old || maxRunning.CompareAndSwap(old, n) {
				break
			}
		}
		calls.Add(1)
		time.Sleep(time.Millisecond) // widen the window a missing lock would open
		return nil
	}
	consumers := []client.Handler{Wrap(store, h), Wrap(store, h)}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := consumers[i%2](context.Background(), msg("t.a.b", "order-1", fmt.Sprint(i))); err != nil {
				t.Errorf("delivery %d = %v", i, err)
			}
		}()
	}
	wg.Wait()
	if calls.Load() != 1 || maxRunning.Load() != 1 {
		t.Fatalf("32 concurrent deliveries of one key ran the handler %d times, at most %d at once; want 1, 1", calls.Load(), maxRunning.Load())
	}
}

func TestWrapTwiceWithTheSameKeyDoesNotDeadlock(t *testing.T) {
	inner, outer := NewMemoryStore(), NewMemoryStore()
	h := newCounter()
	w := Wrap(outer, Wrap(inner, h.handle))
	done := make(chan error, 1)
	go func() { done <- w(context.Background(), msg("t.a.b", "order-1", "1")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a handler wrapped twice waited for its own key")
	}
	for name, s := range map[string]*MemoryStore{"inner": inner, "outer": outer} {
		if seen, _ := s.Seen(context.Background(), "t.a.b/key/order-1"); !seen {
			t.Errorf("%s store did not record the key", name)
		}
	}
}

func TestWrapDifferentKeysRunConcurrently(t *testing.T) {
	started := make(chan string, 2)
	release := make(chan struct{})
	w := Wrap(NewMemoryStore(), func(_ context.Context, m *client.Message) error {
		started <- m.Key
		<-release
		return nil
	})
	errs := make(chan error, 2)
	for _, key := range []string{"a", "b"} {
		go func() { errs <- w(context.Background(), msg("t.a.b", key, key)) }()
	}
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers of two different keys did not run at the same time")
		}
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWrapWaitingForKeyGivesUpOnCancel(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	w := Wrap(NewMemoryStore(), func(context.Context, *client.Message) error {
		close(started)
		<-release
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- w(context.Background(), msg("t.a.b", "k", "1")) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- w(ctx, msg("t.a.b", "k", "2")) }()
	cancel()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting delivery after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a delivery waiting for its key ignored the canceled context")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// failingStore fails Seen or Record on demand.
type failingStore struct {
	*MemoryStore
	seenErr, recordErr error
}

func (s *failingStore) Seen(ctx context.Context, key string) (bool, error) {
	if s.seenErr != nil {
		return false, s.seenErr
	}
	return s.MemoryStore.Seen(ctx, key)
}

func (s *failingStore) Record(ctx context.Context, key string) error {
	if s.recordErr != nil {
		return s.recordErr
	}
	return s.MemoryStore.Record(ctx, key)
}

func TestWrapRecordFailureNacksAndRedeliveryRunsHandlerAgain(t *testing.T) {
	diskFull := errors.New("disk full")
	store := &failingStore{MemoryStore: NewMemoryStore(), recordErr: diskFull}
	h := newCounter()
	w := Wrap(store, h.handle)
	m := msg("t.a.b", "order-1", "1")
	if err := w(context.Background(), m); !errors.Is(err, diskFull) {
		t.Fatalf("wrapped handler with failing Record = %v, want an error wrapping %v", err, diskFull)
	}
	store.recordErr = nil
	if err := w(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := h.total(); got != 2 {
		t.Fatalf("handler ran %d times, want 2: the documented window after a failed Record", got)
	}
}

func TestWrapLookupFailureNacksWithoutRunningHandler(t *testing.T) {
	down := errors.New("redis down")
	h := newCounter()
	w := Wrap(&failingStore{MemoryStore: NewMemoryStore(), seenErr: down}, h.handle)
	if err := w(context.Background(), msg("t.a.b", "order-1", "1")); !errors.Is(err, down) {
		t.Fatalf("wrapped handler with failing Seen = %v, want an error wrapping %v", err, down)
	}
	if got := h.total(); got != 0 {
		t.Fatalf("handler ran %d times although the lookup failed, want 0", got)
	}
}

func TestWrapRecordsDespiteCanceledContext(t *testing.T) {
	store := NewMemoryStore()
	ctx, cancel := context.WithCancel(context.Background())
	w := Wrap(&ctxCheckingStore{store}, func(context.Context, *client.Message) error {
		cancel() // the consumer closes while the handler finishes
		return nil
	})
	if err := w(ctx, msg("t.a.b", "order-1", "1")); err != nil {
		t.Fatalf("wrapped handler = %v, want nil: the handler succeeded", err)
	}
	if seen, _ := store.Seen(context.Background(), "t.a.b/key/order-1"); !seen {
		t.Fatal("a handler that succeeded while the consumer closed was not recorded")
	}
}

// ctxCheckingStore fails Record when its context is done, as a network
// store would.
type ctxCheckingStore struct{ *MemoryStore }

func (s *ctxCheckingStore) Record(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemoryStore.Record(ctx, key)
}

func TestKeyLocksForgetReleasedKeys(t *testing.T) {
	l := newKeyLocks()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := l.lock(context.Background(), fmt.Sprint(i%10))
			if err != nil {
				t.Error(err)
				return
			}
			unlock()
		}()
	}
	wg.Wait()
	if n := l.size(); n != 0 {
		t.Fatalf("%d keys still in the lock table after every holder released, want 0", n)
	}
}
