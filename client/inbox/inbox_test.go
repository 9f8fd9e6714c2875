package inbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmqio/dmq/client"
	"github.com/dmqio/dmq/internal/dmqtest"
	bolt "go.etcd.io/bbolt"
)

// openInbox opens an inbox at path and closes it at the end of the test,
// after checking that its indexes and counts agree with its entries.
func openInbox(t *testing.T, path string, h client.Handler, opts ...Option) *Inbox {
	t.Helper()
	opts = append([]Option{OnError(func(err error) { t.Errorf("inbox error: %v", err) })}, opts...)
	ib, err := Open(path, h, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if !ib.closed.Load() {
			if err := ib.check(); err != nil {
				t.Errorf("inbox inconsistent: %v", err)
			}
		}
		if err := ib.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ib
}

// check verifies that every entry has a body and the index key of its
// state, and that the counts match the indexes.
func (ib *Inbox) check() error {
	return ib.db.View(func(tx *bolt.Tx) error {
		n := map[string]int{}
		for _, b := range allBuckets {
			n[string(b)] = tx.Bucket(b).Stats().KeyN
		}
		pending, failed := int(count(tx, countPending)), int(count(tx, countFailed))
		if n["due"] != pending || n["received"] != pending || n["failed"] != failed ||
			n["entries"] != pending+failed || n["bodies"] != n["entries"] {
			return fmt.Errorf("bucket sizes %v, counts pending %d failed %d", n, pending, failed)
		}
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			switch rec.State {
			case Pending:
				if tx.Bucket(bucketDue).Get(timeKey(rec.NextAttempt, rec.id())) == nil ||
					tx.Bucket(bucketReceived).Get(timeKey(rec.ReceivedAt, rec.id())) == nil {
					return fmt.Errorf("pending entry %s is missing from an index", k)
				}
			case Failed:
				if tx.Bucket(bucketFailed).Get(timeKey(rec.FailedAt, rec.id())) == nil {
					return fmt.Errorf("failed entry %s is missing from the failed index", k)
				}
			default:
				return fmt.Errorf("entry %s has state %v", k, rec.State)
			}
			return nil
		})
	})
}

func newMsg(topic, id, key string) *client.Message {
	return &client.Message{
		ID: id, Topic: topic, Key: key, Attempt: 1, PublishedAt: time.Now(),
		Headers: map[string]string{"h": id}, Body: []byte("body " + id), ClientMessageID: "c" + id,
	}
}

// deliver passes m to the inbox's Handler as the SDK would.
func deliver(t *testing.T, ib *Inbox, m *client.Message) {
	t.Helper()
	if err := ib.Handler()(context.Background(), m); err != nil {
		t.Fatalf("Handler(%s/%s) = %v, want nil (ack)", m.Topic, m.ID, err)
	}
}

func stats(t *testing.T, ib *Inbox) Stats {
	t.Helper()
	st, err := ib.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func waitStats(t *testing.T, ib *Inbox, what string, cond func(Stats) bool) {
	t.Helper()
	dmqtest.Eventually(t, 10*time.Second, what, func() bool { return cond(stats(t, ib)) })
}

// recorder is a business handler that records its calls and fails, panics
// or blocks as told per message key.
type recorder struct {
	mu    sync.Mutex
	calls []*client.Message
	at    []time.Time
	// behave decides the outcome of each call; nil means success.
	behave func(ctx context.Context, m *client.Message) error
}

func (r *recorder) handle(ctx context.Context, m *client.Message) error {
	r.mu.Lock()
	r.calls = append(r.calls, m)
	r.at = append(r.at, time.Now())
	behave := r.behave
	r.mu.Unlock()
	if behave == nil {
		return nil
	}
	return behave(ctx, m)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func (r *recorder) snapshot() ([]*client.Message, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*client.Message(nil), r.calls...), append([]time.Time(nil), r.at...)
}

func TestHandlerStoresBeforeProcessing(t *testing.T) {
	release := make(chan struct{})
	rec := &recorder{behave: func(context.Context, *client.Message) error { <-release; return nil }}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle)
	var sent []*client.Message
	for i := 0; i < 3; i++ {
		sent = append(sent, newMsg("t.a.b", fmt.Sprint(i), fmt.Sprint("k", i)))
		deliver(t, ib, sent[i])
	}
	// The Handler returned (the SDK acks) while the business handler is
	// still busy with the first message: all three are stored.
	st := stats(t, ib)
	if st.Pending != 3 || st.Failed != 0 {
		t.Fatalf("Stats after storing 3 = %+v, want 3 pending", st)
	}
	if st.OldestPending <= 0 {
		t.Errorf("OldestPending = %s, want > 0", st.OldestPending)
	}
	list, err := ib.List(Pending, 10)
	if err != nil || len(list) != 3 {
		t.Fatalf("List(Pending) = %d entries, %v; want 3", len(list), err)
	}
	e := list[0]
	if e.ID != "t.a.b/0" || e.MessageID != "0" || e.Topic != "t.a.b" || e.Key != "k0" || string(e.Body) != "body 0" ||
		e.Headers["h"] != "0" || e.ClientMessageID != "c0" || !e.PublishedAt.Equal(sent[0].PublishedAt) ||
		e.State != Pending || e.Attempts != 0 || e.ReceivedAt.IsZero() {
		t.Fatalf("first pending entry = %+v", e)
	}
	close(release)
	waitStats(t, ib, "all entries processed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	calls, _ := rec.snapshot()
	if len(calls) != 3 {
		t.Fatalf("business handler ran %d times, want 3", len(calls))
	}
	for i, m := range calls {
		if m.ID != fmt.Sprint(i) || m.Key != fmt.Sprint("k", i) || string(m.Body) != fmt.Sprint("body ", i) || m.Attempt != 1 || m.LastFailure != "" {
			t.Errorf("call %d got %+v, want message %d, attempt 1", i, m, i)
		}
	}
	if st := stats(t, ib); st.OldestPending != 0 {
		t.Errorf("OldestPending of an empty inbox = %s, want 0", st.OldestPending)
	}
}

func TestRedeliveryIsStoredOnce(t *testing.T) {
	release := make(chan struct{})
	rec := &recorder{behave: func(context.Context, *client.Message) error { <-release; return nil }}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle)
	deliver(t, ib, newMsg("t.a.b", "1", "k"))
	redelivery := newMsg("t.a.b", "1", "k")
	redelivery.Attempt = 2
	deliver(t, ib, redelivery)
	deliver(t, ib, newMsg("t.a.c", "1", "k")) // the same id in another topic is another message
	if st := stats(t, ib); st.Pending != 2 {
		t.Fatalf("pending after a message, its redelivery and a message of another topic = %d, want 2", st.Pending)
	}
	close(release)
	waitStats(t, ib, "all entries processed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	if n := rec.count(); n != 2 {
		t.Fatalf("business handler ran %d times, want 2", n)
	}
}

func TestFailedAttemptsBackOffExponentially(t *testing.T) {
	const initial, maxBackoff = 20 * time.Millisecond, 80 * time.Millisecond
	rec := &recorder{behave: func(_ context.Context, m *client.Message) error {
		if m.Attempt < 6 {
			return fmt.Errorf("fail %d", m.Attempt)
		}
		return nil
	}}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, InitialBackoff(initial), MaxBackoff(maxBackoff))
	deliver(t, ib, newMsg("t.a.b", "1", "k"))
	waitStats(t, ib, "the entry to succeed on attempt 6", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	calls, at := rec.snapshot()
	if len(calls) != 6 {
		t.Fatalf("handler ran %d times, want 6", len(calls))
	}
	wantWait := []time.Duration{20, 40, 80, 80, 80} // ms, after failures 1..5
	for i, m := range calls {
		if m.Attempt != i+1 {
			t.Errorf("call %d has Attempt %d, want %d", i+1, m.Attempt, i+1)
		}
		if i == 0 {
			continue
		}
		if want := fmt.Sprintf("fail %d", i); m.LastFailure != want {
			t.Errorf("call %d has LastFailure %q, want %q", i+1, m.LastFailure, want)
		}
		if gap, want := at[i].Sub(at[i-1]), wantWait[i-1]*time.Millisecond; gap < want {
			t.Errorf("attempt %d came %s after attempt %d, want at least %s", i+1, gap, i, want)
		}
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	ib := &Inbox{opts: options{initialBackoff: time.Second, maxBackoff: 5 * time.Minute}}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second,
		64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := ib.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := ib.backoff(10_000); got != 5*time.Minute {
		t.Errorf("backoff(10000) = %s, want 5m", got)
	}
}

func TestPanicCountsAsFailedAttempt(t *testing.T) {
	rec := &recorder{behave: func(_ context.Context, m *client.Message) error {
		if m.Attempt == 1 {
			panic("nil map")
		}
		return nil
	}}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, InitialBackoff(time.Millisecond))
	deliver(t, ib, newMsg("t.a.b", "1", "k"))
	waitStats(t, ib, "the entry to succeed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	calls, _ := rec.snapshot()
	if len(calls) != 2 || !strings.Contains(calls[1].LastFailure, "panicked: nil map") {
		t.Fatalf("handler ran %d times; want 2, the second with LastFailure naming the panic", len(calls))
	}
}

func TestMaxAttemptsMovesEntryToFailedUntilRetry(t *testing.T) {
	var mu sync.Mutex
	broken := true
	rec := &recorder{behave: func(_ context.Context, m *client.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if broken && m.Key == "bad" {
			return errors.New("still broken")
		}
		return nil
	}}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, InitialBackoff(time.Millisecond), MaxAttempts(3))
	deliver(t, ib, newMsg("t.a.b", "1", "bad"))
	waitStats(t, ib, "the entry to fail", func(s Stats) bool { return s.Failed == 1 && s.Pending == 0 })
	failed, err := ib.List(Failed, 0)
	if err != nil || len(failed) != 1 {
		t.Fatalf("List(Failed) = %d entries, %v; want 1", len(failed), err)
	}
	if e := failed[0]; e.ID != "t.a.b/1" || e.State != Failed || e.Attempts != 3 || e.LastError != "still broken" || !e.NextAttempt.IsZero() {
		t.Fatalf("failed entry = %+v; want 3 attempts, the last error, no next attempt", e)
	}
	// The failed entry is not retried: a later message is processed while
	// the failed one's count stays at 3.
	deliver(t, ib, newMsg("t.a.b", "2", "good"))
	waitStats(t, ib, "the good entry to be processed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	if n := rec.count(); n != 4 {
		t.Fatalf("handler ran %d times, want 4 (3 failed attempts, 1 good message)", n)
	}

	mu.Lock()
	broken = false
	mu.Unlock()
	if err := ib.Retry("t.a.b/1"); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	waitStats(t, ib, "the retried entry to succeed", func(s Stats) bool { return s.Failed == 0 && s.Pending == 0 && s.Running == 0 })
	calls, _ := rec.snapshot()
	if last := calls[len(calls)-1]; last.ID != "1" || last.Attempt != 1 || last.LastFailure != "still broken" {
		t.Fatalf("run after Retry got %+v; want message 1, attempt 1 (fresh budget), the last failure", last)
	}
	if err := ib.Retry("t.a.b/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Retry of a processed entry = %v, want ErrNotFound", err)
	}
}

func TestDeleteRemovesEntry(t *testing.T) {
	rec := &recorder{behave: func(context.Context, *client.Message) error { return errors.New("down") }}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, InitialBackoff(time.Hour), MaxBackoff(time.Hour))
	deliver(t, ib, newMsg("t.a.b", "1", "k"))
	dmqtest.Eventually(t, 10*time.Second, "the first attempt", func() bool {
		l, err := ib.List(Pending, 1)
		return err == nil && len(l) == 1 && l[0].Attempts == 1
	})
	if err := ib.Delete("t.a.b/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if st := stats(t, ib); st.Pending != 0 || st.Failed != 0 {
		t.Fatalf("Stats after Delete = %+v, want empty", st)
	}
	if err := ib.Delete("t.a.b/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if _, err := ib.List(State(9), 1); err == nil {
		t.Fatal("List of an unknown state succeeded")
	}
}

// Entries left pending by a closed (or crashed) inbox are processed after
// Open, with the attempts already made.
func TestReopenProcessesPendingEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inbox.db")
	first := &recorder{behave: func(ctx context.Context, m *client.Message) error {
		if m.Key == "flaky" {
			return errors.New("flaky failed")
		}
		<-ctx.Done() // busy until Close interrupts it
		return ctx.Err()
	}}
	ib := openInbox(t, path, first.handle, InitialBackoff(time.Hour), MaxBackoff(time.Hour))
	deliver(t, ib, newMsg("t.a.b", "0", "flaky"))
	dmqtest.Eventually(t, 10*time.Second, "the flaky entry to fail once", func() bool {
		l, err := ib.List(Pending, 1)
		return err == nil && len(l) == 1 && l[0].Attempts == 1
	})
	for i := 1; i <= 5; i++ {
		deliver(t, ib, newMsg("t.a.b", fmt.Sprint(i), "k"))
	}
	waitStats(t, ib, "a handler to be busy", func(s Stats) bool { return s.Running == 1 && s.Pending == 6 })
	if err := ib.check(); err != nil {
		t.Fatal(err)
	}
	if err := ib.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := ib.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := ib.Handler()(context.Background(), newMsg("t.a.b", "9", "k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Handler after Close = %v, want ErrClosed (the broker keeps the message)", err)
	}
	if _, err := ib.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close = %v, want ErrClosed", err)
	}

	// Reopen two hours later: the flaky entry's backoff has passed.
	second := &recorder{}
	later := func(o *options) { o.now = func() time.Time { return time.Now().Add(2 * time.Hour) } }
	ib = openInbox(t, path, second.handle, Concurrency(2), later)
	waitStats(t, ib, "the entries left to be processed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	calls, _ := second.snapshot()
	attempts := map[string]int{}
	for _, m := range calls {
		attempts[m.ID] = m.Attempt
	}
	want := map[string]int{"0": 2, "1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
	if len(calls) != len(want) || fmt.Sprint(attempts) != fmt.Sprint(want) {
		t.Fatalf("after reopen the handler ran on %v (id → attempt) in %d calls, want %v once each", attempts, len(calls), want)
	}
}

func TestMaxPendingRefusesMessages(t *testing.T) {
	rec := &recorder{behave: func(ctx context.Context, m *client.Message) error { <-ctx.Done(); return ctx.Err() }}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, MaxPending(2))
	deliver(t, ib, newMsg("t.a.b", "1", "k"))
	deliver(t, ib, newMsg("t.a.b", "2", "k"))
	deliver(t, ib, newMsg("t.a.b", "2", "k")) // a redelivery is still acked
	if err := ib.Handler()(context.Background(), newMsg("t.a.b", "3", "k")); !errors.Is(err, ErrFull) {
		t.Fatalf("Handler with 2 of 2 pending = %v, want ErrFull", err)
	}
}

func TestConcurrentWorkersRunEachEntryOnce(t *testing.T) {
	const workers, n = 4, 300
	var mu sync.Mutex
	started := 0
	allStarted := make(chan struct{})
	rec := &recorder{behave: func(context.Context, *client.Message) error {
		mu.Lock()
		started++
		if started == workers {
			close(allStarted)
		}
		mu.Unlock()
		<-allStarted // the first calls wait until every worker is busy
		return nil
	}}
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), rec.handle, Concurrency(workers))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ib.Handler()(context.Background(), newMsg("t.a.b", fmt.Sprint(i), "k")); err != nil {
				t.Errorf("Handler: %v", err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-allStarted:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d workers did not run at the same time", workers)
	}
	waitStats(t, ib, "all entries processed", func(s Stats) bool { return s.Pending == 0 && s.Running == 0 })
	calls, _ := rec.snapshot()
	seen := map[string]int{}
	for _, m := range calls {
		seen[m.ID]++
	}
	if len(calls) != n || len(seen) != n {
		t.Fatalf("%d handler calls for %d distinct entries, want %d once each", len(calls), len(seen), n)
	}
}

func TestDueEntriesReadsOnlyWhatItNeeds(t *testing.T) {
	ib := openInbox(t, filepath.Join(t.TempDir(), "inbox.db"), func(context.Context, *client.Message) error { return nil })
	// Stop the dispatcher so that nothing is taken while the test reads
	// the due index itself; Close at cleanup still stops the rest.
	close(ib.quit)
	ib.dispatcher.Wait()
	ib.quit = make(chan struct{})
	for i := 0; i < 50; i++ {
		deliver(t, ib, newMsg("t.a.b", fmt.Sprint(i), "k"))
	}
	due, next, err := ib.dueEntries(time.Now(), 3, map[string]bool{"t.a.b/0": true})
	if err != nil || len(due) != 3 || !next.IsZero() {
		t.Fatalf("dueEntries(limit 3) = %d entries, next %v, %v; want 3", len(due), next, err)
	}
	if due[0].ID != "t.a.b/1" || due[2].ID != "t.a.b/3" {
		t.Fatalf("dueEntries = %s..%s, want the earliest after the skipped one: t.a.b/1..t.a.b/3", due[0].ID, due[2].ID)
	}
	due, next, err = ib.dueEntries(time.Unix(0, 0), 3, nil)
	if err != nil || len(due) != 0 || next.IsZero() {
		t.Fatalf("dueEntries before anything is due = %d entries, next %v, %v; want none and the next due time", len(due), next, err)
	}
}

func TestOpenFailsWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inbox.db")
	openInbox(t, path, func(context.Context, *client.Message) error { return nil })
	ib, err := Open(path, nil, func(o *options) { o.lockTimeout = 50 * time.Millisecond })
	if err == nil {
		ib.Close()
		t.Fatal("a second Open of an open inbox succeeded")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), nil, InitialBackoff(time.Minute), MaxBackoff(time.Second)); err == nil {
		t.Fatal("Open with initial backoff above max succeeded")
	}
}
