package auth

import (
	"log/slog"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmqio/dmq/internal/meta"
)

// twoRegistries opens two registries on one metadata store, as two cluster nodes.
func twoRegistries(t *testing.T) (ms *meta.Store, leader, other *Registry) {
	t.Helper()
	ms, err := meta.Open(t.TempDir(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	if leader, err = Open(ms); err != nil {
		t.Fatal(err)
	}
	if other, err = Open(ms); err != nil {
		t.Fatal(err)
	}
	return ms, leader, other
}

// aliceAndShop creates, through r, the viewer alice (logged in: s) and the application
// shop (its token).
func aliceAndShop(t *testing.T, r *Registry) (token string, s Session) {
	t.Helper()
	if _, err := r.CreateUser(User{Name: "alice", Role: RoleViewer}, "correct horse", "test"); err != nil {
		t.Fatal(err)
	}
	_, token, err := r.Create(App{Name: "shop", Grants: []Grant{{Pattern: "dev.shop.*", Publish: true}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if s, err = r.Login("alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	return token, s
}

// Two registries on one metadata store stand for two cluster nodes reading the same
// replicated data: what one writes, the other knows after Reload — tokens, their
// revocation (open streams end), console sessions and their end. Sessions also outlive
// a restart.
func TestRegistriesOnOneStoreShareTokensAndSessions(t *testing.T) {
	ms, leader, other := twoRegistries(t)
	token, s := aliceAndShop(t, leader)
	if _, _, err := other.Session(s.ID); err == nil {
		t.Fatal("a session is known before the reload: the test proves nothing")
	}
	if err := other.Reload(ms); err != nil {
		t.Fatal(err)
	}
	if got, _, err := other.Session(s.ID); err != nil || got.User != "alice" || got.CSRF != s.CSRF {
		t.Fatalf("the other node's view of alice's session: %+v, %v", got, err)
	}
	app, revoked, err := other.Authenticate(token)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Reload(ms); err != nil {
		t.Fatal(err)
	}
	if !other.Valid(app) {
		t.Fatal("a reload without changes invalidated an application")
	}

	if err := leader.Revoke("shop"); err != nil {
		t.Fatal(err)
	}
	leader.Logout(s.ID)
	if err := other.Reload(ms); err != nil {
		t.Fatal(err)
	}
	select {
	case <-revoked:
	default:
		t.Fatal("the revoked token's streams were not told")
	}
	if _, _, err := other.Authenticate(token); err == nil {
		t.Fatal("a revoked token is accepted by the other node")
	}
	if _, _, err := other.Session(s.ID); err == nil {
		t.Fatal("an ended session is accepted by the other node")
	}

	s2, err := leader.Login("alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := Open(ms)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := restarted.Session(s2.ID); err != nil {
		t.Fatalf("a session did not outlive a restart: %v", err)
	}
	if err := leader.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Reload(ms); err != nil {
		t.Fatal(err)
	}
	if _, _, err := restarted.Session(s2.ID); err == nil {
		t.Fatal("a deleted user's session is accepted")
	}
}

// A registry that does not know a token or a session asks CatchUp once, and looks again
// if it reloaded meanwhile; without a reload the miss stands.
func TestCatchUpOnUnknownTokenOrSession(t *testing.T) {
	ms, leader, other := twoRegistries(t)
	calls := 0
	other.CatchUp = func() bool {
		calls++
		return other.Reload(ms) == nil // the change reached this copy meanwhile
	}
	token, s := aliceAndShop(t, leader)
	if a, _, err := other.Authenticate(token); err != nil || a.Name != "shop" || calls != 1 {
		t.Fatalf("a token created on the leader: %v, %v after %d catch-ups; want shop after 1", a, err, calls)
	}
	if got, _, err := other.Session(s.ID); err != nil || got.User != "alice" {
		t.Fatalf("a session started on the leader: %+v, %v", got, err)
	}
	other.CatchUp = func() bool { calls++; return false }
	if _, _, err := other.Authenticate("dmq_not-a-token"); err == nil || calls != 2 {
		t.Fatalf("an unknown token: %v after %d catch-ups", err, calls)
	}
}

// pausedStore is a memStore whose Apps, while pause is set, copies what it holds, says
// so on reading, and waits for resume before handing the copy out: a reload that read
// the store just before a write.
type pausedStore struct {
	*memStore
	pause   atomic.Bool
	reading chan struct{}
	resume  chan struct{}
}

func (p *pausedStore) Apps(fn func([]byte) error) error {
	if !p.pause.Load() {
		return p.memStore.Apps(fn)
	}
	p.mu.Lock()
	held := maps.Clone(p.apps)
	p.mu.Unlock()
	close(p.reading)
	<-p.resume
	for _, b := range held {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// A token created while the registry reloads (on s0's leader, while another node's
// change is being loaded) is known once both are done: the reload does not put back the
// state it read before the token was written.
func TestATokenCreatedDuringAReloadIsKept(t *testing.T) {
	store := &pausedStore{memStore: newMemStore(), reading: make(chan struct{}), resume: make(chan struct{})}
	r, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	store.pause.Store(true)
	reloaded := make(chan error, 1)
	go func() { reloaded <- r.Reload(store) }()
	<-store.reading
	type created struct {
		token string
		err   error
	}
	done := make(chan created, 1)
	go func() {
		_, token, err := r.Create(App{Name: "shop", Grants: []Grant{{Pattern: "dev.shop.*", Publish: true}}}, "test")
		done <- created{token, err}
	}()
	// Give the write its chance to land inside the reload (it must wait for it instead).
	var c created
	finished := false
	select {
	case c = <-done:
		finished = true
		t.Log("the write finished while the reload was reading")
	case <-time.After(100 * time.Millisecond):
	}
	store.pause.Store(false)
	close(store.resume)
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if !finished {
		c = <-done
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	if _, _, err := r.Authenticate(c.token); err != nil {
		t.Fatalf("the token created during the reload: %v", err)
	}
}
