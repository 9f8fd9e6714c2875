package auth

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles of console users.
const (
	RoleAdmin  = "admin"  // everything
	RoleOwner  = "owner"  // registers and manages the topics of a department; sees all
	RoleViewer = "viewer" // sees everything, changes nothing
)

// User is a person who logs in to the console.
type User struct {
	Name         string `json:"name"`
	Role         string `json:"role"`
	Department   string `json:"department,omitempty"`
	PasswordHash []byte `json:"password_hash"`
	CreatedAtMs  int64  `json:"created_at_ms"`
	CreatedBy    string `json:"created_by"`
}

// UserStore persists users.
type UserStore interface {
	PutUser(name string, record []byte) error
	DeleteUser(name string) error
	Users(fn func(record []byte) error) error
}

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 8

// dummyHash is compared against when the user does not exist, so a login
// takes as long for an unknown name as for a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password of anyone"), bcrypt.DefaultCost)

// principal is what a user may do, as an application would.
func (u *User) principal() *App {
	a := &App{Name: "user:" + u.Name}
	switch u.Role {
	case RoleAdmin:
		a.Admin = true
	case RoleOwner:
		a.Grants = []Grant{{Pattern: "*." + u.Department + ".*", Manage: true}, {Pattern: "*"}}
	default:
		a.Grants = []Grant{{Pattern: "*"}} // sees every topic, may do nothing
	}
	return a
}

// CreateUser adds a user with a bcrypt hash of password.
func (r *Registry) CreateUser(u User, password, by string) (User, error) {
	if !appNameRE.MatchString(u.Name) {
		return User{}, fmt.Errorf("%w: user name %s: use 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalid, short(u.Name))
	}
	switch u.Role {
	case RoleAdmin, RoleViewer:
		u.Department = ""
	case RoleOwner:
		if !segmentRE.MatchString(u.Department) || u.Department == "*" || len(u.Department) > MaxDepartmentLen {
			return User{}, fmt.Errorf("%w: an owner needs the department it manages (a topic name part of 1 to 64 characters, such as shop)", ErrInvalid)
		}
	default:
		return User{}, fmt.Errorf("%w: role %s: want admin, owner or viewer", ErrInvalid, short(u.Role))
	}
	if len(password) < MinPasswordLen {
		return User{}, fmt.Errorf("%w: the password must have at least %d characters", ErrInvalid, MinPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return User{}, fmt.Errorf("%w: %v", ErrInvalid, err) // longer than bcrypt takes
	}
	u.PasswordHash, u.CreatedAtMs, u.CreatedBy = hash, time.Now().UnixMilli(), by
	b, _ := json.Marshal(&u)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users[u.Name] != nil {
		return User{}, fmt.Errorf("%w: user %q already exists", ErrExists, u.Name)
	}
	if err := r.userStore.PutUser(u.Name, b); err != nil {
		return User{}, err
	}
	stored := u
	r.users[u.Name] = &stored
	if u.Role == RoleAdmin {
		r.dropSetupLocked()
	}
	u.PasswordHash = nil
	return u, nil
}

// DeleteUser removes a user and ends their sessions.
func (r *Registry) DeleteUser(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users[name] == nil {
		return fmt.Errorf("%w: no user %q", ErrNotFound, name)
	}
	if err := r.userStore.DeleteUser(name); err != nil {
		return err
	}
	delete(r.users, name)
	r.sessions.endUser(name)
	return nil
}

// ListUsers returns the users by name, without password hashes.
func (r *Registry) ListUsers() []User {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]User, 0, len(r.users))
	for _, u := range r.users {
		c := *u
		c.PasswordHash = nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Login checks a user's password and starts a session. It fails alike for
// an unknown user and a wrong password.
func (r *Registry) Login(name, password string) (Session, error) {
	r.mu.RLock()
	u := r.users[name]
	r.mu.RUnlock()
	hash := dummyHash
	if u != nil {
		hash = u.PasswordHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || u == nil {
		return Session{}, fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	return r.sessions.start(u)
}

// Session returns the live session with id and what its user may do.
func (r *Registry) Session(id string) (Session, *App, error) {
	s, ok := r.sessions.get(id)
	if !ok && r.CatchUp != nil && r.CatchUp() {
		s, ok = r.sessions.get(id)
	}
	if !ok {
		return Session{}, nil, fmt.Errorf("%w: not logged in (or the session expired)", ErrUnauthenticated)
	}
	r.mu.RLock()
	u := r.users[s.User]
	r.mu.RUnlock()
	if u == nil {
		r.sessions.end(id)
		return Session{}, nil, fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, s.User)
	}
	return s, u.principal(), nil
}

// Logout ends a session.
func (r *Registry) Logout(id string) { r.sessions.end(id) }
