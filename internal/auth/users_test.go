package auth

import (
	"errors"
	"testing"
	"time"
)

func TestUsersLoginSessionsAndRoles(t *testing.T) {
	store := newMemStore()
	r, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	setup, _ := r.EnsureAdmin()
	if setup == "" {
		t.Fatal("no setup token without an administrator")
	}
	for _, bad := range []struct {
		u  User
		pw string
	}{
		{User{Name: "a", Role: "root"}, "password1"},
		{User{Name: "a", Role: RoleOwner}, "password1"},
		{User{Name: "a", Role: RoleViewer}, "short"},
		{User{Name: "bad name", Role: RoleViewer}, "password1"},
	} {
		if _, err := r.CreateUser(bad.u, bad.pw, "test"); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateUser(%+v) = %v, want ErrInvalid", bad.u, err)
		}
	}
	if _, err := r.CreateUser(User{Name: "root", Role: RoleAdmin}, "correct horse", "setup"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Authenticate(setup); err == nil {
		t.Fatal("the setup token still works after an administrator user exists")
	}
	if _, err := r.CreateUser(User{Name: "shopowner", Role: RoleOwner, Department: "shop"}, "password1", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateUser(User{Name: "vera", Role: RoleViewer}, "password1", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Login("root", "wrong password"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := r.Login("nobody", "whatever1"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("unknown user: %v", err)
	}
	s, err := r.Login("shopowner", "password1")
	if err != nil || s.CSRF == "" || s.ID == s.CSRF {
		t.Fatalf("login: %+v, %v", s, err)
	}
	_, owner, err := r.Session(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if owner.Allowed(Manage, "prod.shop.orders", "") != nil || owner.Allowed(Manage, "prod.pay.charges", "") == nil || !owner.Sees("prod.pay.charges") || owner.RequireAdmin("approve") == nil {
		t.Fatal("an owner manages its department's topics, sees all, approves nothing")
	}
	vs, _ := r.Login("vera", "password1")
	_, viewer, _ := r.Session(vs.ID)
	if !viewer.Sees("prod.a.b") || viewer.Allowed(Publish, "prod.a.b", "") == nil || viewer.Allowed(Manage, "prod.a.b", "") == nil {
		t.Fatal("a viewer sees everything and may do nothing")
	}
	r.Logout(s.ID)
	if _, _, err := r.Session(s.ID); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after logout: %v", err)
	}
	if err := r.DeleteUser("vera"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Session(vs.ID); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("session of a deleted user: %v", err)
	}
	again, _ := Open(store)
	if users := again.ListUsers(); len(users) != 2 || users[0].Name != "root" || users[0].PasswordHash != nil {
		t.Fatalf("reloaded users = %+v", users)
	}
}

func TestLoginLimiterSlowsGuessing(t *testing.T) {
	l := NewLoginLimiter()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < FreeFailures; i++ {
		if w := l.Wait("root", "10.0.0.1:1"); w != 0 {
			t.Fatalf("attempt %d waits %s", i, w)
		}
		l.Failed("root", "10.0.0.1:1")
	}
	if w := l.Wait("root", "10.0.0.2:1"); w != time.Second {
		t.Fatalf("after %d failures: wait %s, want 1s (by user name, from any address)", FreeFailures, w)
	}
	for i := 0; i < 5; i++ {
		l.Failed("root", "10.0.0.1:1")
	}
	if w := l.Wait("root", "10.0.0.1:1"); w != 32*time.Second {
		t.Fatalf("after 10 failures: wait %s, want 32s", w)
	}
	now = now.Add(40 * time.Second)
	if w := l.Wait("root", "10.0.0.1:1"); w != 0 {
		t.Fatalf("after waiting: %s", w)
	}
	l.Succeeded("root")
	if w := l.Wait("root", "10.0.0.9:1"); w != 0 {
		t.Fatalf("after a success from elsewhere: %s", w)
	}
}
