package auth

import (
	"errors"
	"sync"
	"testing"
)

type memStore struct {
	mu          sync.Mutex
	apps, users map[string][]byte
}

func newMemStore() *memStore { return &memStore{apps: map[string][]byte{}, users: map[string][]byte{}} }

func (m *memStore) PutUser(name string, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[name] = b
	return nil
}
func (m *memStore) DeleteUser(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.users, name)
	return nil
}
func (m *memStore) Users(fn func([]byte) error) error {
	for _, b := range m.users {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) PutApp(name string, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apps[name] = b
	return nil
}
func (m *memStore) DeleteApp(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.apps, name)
	return nil
}
func (m *memStore) Apps(fn func([]byte) error) error {
	for _, b := range m.apps {
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"*", "prod.a.b", true},
		{"prod.suyun.*", "prod.suyun.orders", true},
		{"prod.suyun.*", "prod.suyun.orders.eu", true},
		{"prod.suyun.*", "prod.suyunx.orders", false},
		{"prod.suyun.*", "test.suyun.orders", false},
		{"prod.*", "prod.a.b", true},
		{"*.suyun.orders", "test.suyun.orders", true},
		{"*.suyun.orders", "test.suyun.payments", false},
		{"prod.suyun.orders", "prod.suyun.orders", true},
		{"prod.suyun.orders", "prod.suyun.orders.x", false},
		{"prod.*.orders", "prod.a.orders", true},
		{"prod.*.orders", "prod.a.b.orders", false},
	} {
		if got := Match(c.pattern, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
	for _, bad := range []string{"", "prod", "prod..x", "Prod.a.*", "prod.a*.b", "prod.a.b c"} {
		if err := ValidatePattern(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePattern(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestGrantsTokensAndRevocation(t *testing.T) {
	store := newMemStore()
	r, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := r.EnsureAdmin()
	if err != nil || setup == "" {
		t.Fatalf("EnsureAdmin = %q, %v; want a setup token", setup, err)
	}
	if a, _, err := r.Authenticate(setup); err != nil || !a.Admin {
		t.Fatalf("setup token: %v, %v", a, err)
	}
	_, adminTok, err := r.Create(App{Name: "ops", Admin: true}, "setup")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Authenticate(setup); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("setup token after a real administrator exists: %v, want refused", err)
	}
	if again, _ := r.EnsureAdmin(); again != "" {
		t.Fatal("a new setup token although an administrator exists")
	}
	_, tok, err := r.Create(App{Name: "shop", Grants: []Grant{
		{Pattern: "test.a.*", Publish: true},
		{Pattern: "test.b.*", Subscribe: true, Groups: []string{"billing"}},
	}}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	a, revoked, err := r.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action       Action
		topic, group string
		ok           bool
	}{
		{Publish, "test.a.x", "", true},
		{Publish, "test.b.x", "", false},
		{Subscribe, "test.a.x", "g", false},
		{Subscribe, "test.b.x", "billing", true},
		{Subscribe, "test.b.x", "other", false},
		{Manage, "test.a.x", "", false},
	} {
		if err := a.Allowed(c.action, c.topic, c.group); (err == nil) != c.ok {
			t.Errorf("%s %s %s: %v, want allowed=%v", c.action, c.topic, c.group, err, c.ok)
		}
	}
	if err := a.RequireAdmin("approve topics"); !errors.Is(err, ErrDenied) {
		t.Fatalf("non-admin approving: %v", err)
	}
	// Reloaded from the store: the same.
	r2, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	if a2, _, err := r2.Authenticate(tok); err != nil || a2.Name != "shop" {
		t.Fatalf("after reload: %v, %v", a2, err)
	}
	if _, _, err := r2.Authenticate(adminTok); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke("shop"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-revoked:
	default:
		t.Fatal("revocation did not signal open streams")
	}
	if _, _, err := r.Authenticate(tok); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
	if r.Valid(a) {
		t.Fatal("a revoked application is still valid")
	}
	if _, _, err := r.Create(App{Name: "bad name!"}, "ops"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, _, err := r.Create(App{Name: "x", Grants: []Grant{{Pattern: "test.a.*"}}}, "ops"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a grant that allows nothing: %v", err)
	}
}
