// Package auth decides who may do what: applications authenticate with a
// token (one per application, created and revoked by an administrator,
// stored only as its SHA-256 hash) and hold grants per topic pattern —
// publish, subscribe (optionally only with named groups), manage. An
// administrator may do everything, including approving topics and managing
// tokens.
//
// The registry lives in memory, loaded from and written through to a
// Store (the metadata store); checks are map lookups.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Action is something an application may be allowed to do on a topic.
type Action string

const (
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
	// Manage is registering topics, creating, resetting and deleting their
	// groups, and handling their dead letters and delayed messages.
	Manage Action = "manage"
)

// Grant allows actions on the topics a pattern matches.
type Grant struct {
	// Pattern is a topic name whose segments may be "*" (any one segment);
	// a last "*" matches one or more segments, and "*" alone every topic.
	Pattern   string `json:"pattern"`
	Publish   bool   `json:"publish,omitempty"`
	Subscribe bool   `json:"subscribe,omitempty"`
	Manage    bool   `json:"manage,omitempty"`
	// Groups limits Subscribe to these consumer groups (empty: any).
	Groups []string `json:"groups,omitempty"`
}

// App is an application and what it may do.
type App struct {
	Name string `json:"name"`
	// Admin may do everything: approve topics, manage tokens, all topics.
	Admin       bool    `json:"admin,omitempty"`
	Grants      []Grant `json:"grants,omitempty"`
	TokenHash   string  `json:"token_hash"` // hex SHA-256 of the token
	TokenPrefix string  `json:"token_prefix"`
	CreatedAtMs int64   `json:"created_at_ms"`
	CreatedBy   string  `json:"created_by"`
	// Setup marks the one-time administrator token printed at the first
	// start; it is removed once another administrator exists.
	Setup bool `json:"setup,omitempty"`
}

// Store persists the registry.
type Store interface {
	PutApp(name string, record []byte) error
	DeleteApp(name string) error
	Apps(fn func(record []byte) error) error
}

// Errors of the registry; ErrUnauthenticated and ErrDenied are wrapped
// with the details.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrDenied          = errors.New("permission denied")
	ErrNotFound        = errors.New("not found")
	ErrExists          = errors.New("already exists")
	ErrInvalid         = errors.New("invalid")
)

var (
	appNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	segmentRE = regexp.MustCompile(`^([a-z0-9_-]+|\*)$`)
)

// Sizes of what an application's grants may hold (docs/api.md, "Limits"). Names of
// applications and users have at most 64 characters (appNameRE), a user's
// department too (MaxDepartmentLen).
const (
	MaxNameLen      = 64  // an application's or user's name
	MaxGrants       = 100 // grants of one application
	MaxPatternLen   = 200 // a topic pattern, as long as a topic name
	MaxGrantGroups  = 100 // groups named by one grant
	MaxGroupNameLen = 128 // as the broker's group names
	// MaxDepartmentLen bounds the department an owner manages.
	MaxDepartmentLen = 64
)

// short quotes s for an error message, cut to its first 40 bytes when longer than 64.
func short(s string) string {
	if len(s) <= 64 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:40], len(s))
}

// Registry holds the applications and console users, checks tokens,
// passwords and permissions, and keeps console sessions.
type Registry struct {
	store     Store
	userStore UserStore
	sessions  sessions
	// Limiter slows password guessing on logins.
	Limiter *LoginLimiter
	// CatchUp, when set, is called once when a token or a session is not known: on a
	// node whose copy of the registry follows another's (a cluster node that does not
	// lead s0), it waits briefly for changes made there (a token just created, a login
	// on another node) and reports whether the registry was reloaded meanwhile, in which
	// case the lookup is tried again.
	CatchUp func() bool

	mu      sync.RWMutex
	apps    map[string]*App // by name
	users   map[string]*User
	byToken map[string]*App // by token hash
	// revoked is closed and replaced when an application's token is
	// revoked, so open streams of that token end at once.
	revoked map[string]chan struct{}
}

// Open loads the registry from store; a store that is also a SessionStore keeps the
// console sessions too.
func Open(store interface {
	Store
	UserStore
}) (*Registry, error) {
	r := &Registry{Limiter: NewLoginLimiter(), apps: map[string]*App{}, users: map[string]*User{}, byToken: map[string]*App{}, revoked: map[string]chan struct{}{}}
	if err := r.Reload(store); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload replaces what the registry holds with what store holds, and makes store the
// one it writes to: on a cluster node, after another node changed the replicated
// registry, or after the replica was replaced by a snapshot. Streams of tokens that are
// gone end.
//
// It holds the registry's lock while it reads the store, as every write does while it
// writes the store and then the maps: a write made while the store was read (a token
// created on s0's leader while another change reloaded) would otherwise be lost from the
// maps, replaced by the older state read, and its token refused until the next reload.
func (r *Registry) Reload(store interface {
	Store
	UserStore
}) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	users := map[string]*User{}
	err := store.Users(func(b []byte) error {
		var u User
		if err := json.Unmarshal(b, &u); err != nil || u.Name == "" {
			return fmt.Errorf("user record %q: %v", b, err)
		}
		users[u.Name] = &u
		return nil
	})
	if err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	apps, byToken := map[string]*App{}, map[string]*App{}
	err = store.Apps(func(b []byte) error {
		a, err := decodeApp(b)
		if err != nil {
			return err
		}
		apps[a.Name], byToken[a.TokenHash] = a, a
		return nil
	})
	if err != nil {
		return fmt.Errorf("load applications: %w", err)
	}
	ss, _ := store.(SessionStore)
	r.sessions.mu.Lock()
	r.sessions.store = ss
	r.sessions.mu.Unlock()
	if err := r.sessions.load(); err != nil {
		return err
	}
	r.store, r.userStore = store, store
	for hash, ch := range r.revoked {
		if old, now := r.byToken[hash], byToken[hash]; now == nil || (old != nil && !equalApps(old, now)) {
			close(ch)
			delete(r.revoked, hash)
		}
	}
	// Applications that did not change stay the same values (Valid compares them).
	for hash, a := range byToken {
		if old := r.byToken[hash]; old != nil && equalApps(old, a) {
			byToken[hash], apps[a.Name] = old, old
		}
	}
	r.apps, r.users, r.byToken = apps, users, byToken
	return nil
}

func equalApps(a, b *App) bool { return bytes.Equal(encodeApp(a), encodeApp(b)) }

// newToken returns a fresh random token and its hash.
func newToken() (token, hash string) {
	b := make([]byte, 24)
	rand.Read(b)
	token = "dmq_" + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x", sum)
}

// Validate checks an application's name and grants.
func (a *App) Validate() error {
	if !appNameRE.MatchString(a.Name) {
		return fmt.Errorf("%w: application name %s: use 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalid, short(a.Name))
	}
	if !a.Admin && len(a.Grants) == 0 {
		return fmt.Errorf("%w: application %q would be allowed nothing: give grants or make it an administrator", ErrInvalid, a.Name)
	}
	if len(a.Grants) > MaxGrants {
		return fmt.Errorf("%w: application %q has %d grants; the limit is %d", ErrInvalid, a.Name, len(a.Grants), MaxGrants)
	}
	for _, g := range a.Grants {
		if err := ValidatePattern(g.Pattern); err != nil {
			return err
		}
		if len(g.Groups) > MaxGrantGroups {
			return fmt.Errorf("%w: grant on %q names %d groups; the limit is %d", ErrInvalid, g.Pattern, len(g.Groups), MaxGrantGroups)
		}
		for _, name := range g.Groups {
			if name == "" || len(name) > MaxGroupNameLen {
				return fmt.Errorf("%w: grant on %q: group name %s must have 1 to %d characters", ErrInvalid, g.Pattern, short(name), MaxGroupNameLen)
			}
		}
		if !g.Publish && !g.Subscribe && !g.Manage {
			return fmt.Errorf("%w: grant on %q allows nothing (give publish, subscribe or manage)", ErrInvalid, g.Pattern)
		}
		if len(g.Groups) > 0 && !g.Subscribe {
			return fmt.Errorf("%w: grant on %q names groups but does not allow subscribe", ErrInvalid, g.Pattern)
		}
	}
	return nil
}

// ValidatePattern checks a topic pattern.
func ValidatePattern(p string) error {
	if p == "*" {
		return nil
	}
	if len(p) > MaxPatternLen {
		return fmt.Errorf("%w: topic pattern %s is longer than %d characters", ErrInvalid, short(p), MaxPatternLen)
	}
	parts := strings.Split(p, ".")
	if len(parts) < 2 {
		return fmt.Errorf("%w: topic pattern %q: want env.dept.name with '*' for any segment, such as prod.suyun.* (or * for every topic)", ErrInvalid, p)
	}
	for _, s := range parts {
		if !segmentRE.MatchString(s) {
			return fmt.Errorf("%w: topic pattern %q: segment %q is neither a name part nor *", ErrInvalid, p, s)
		}
	}
	return nil
}

// Match reports whether pattern matches topic.
func Match(pattern, topic string) bool {
	if pattern == "*" {
		return true
	}
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range ps {
		if i >= len(ts) {
			return false
		}
		if p == "*" && i == len(ps)-1 {
			return true // a last * takes the rest
		}
		if p != "*" && p != ts[i] {
			return false
		}
	}
	return len(ps) == len(ts)
}

// Create adds an application and returns its token, shown only now.
func (r *Registry) Create(a App, by string) (App, string, error) {
	if err := a.Validate(); err != nil {
		return App{}, "", err
	}
	token, hash := newToken()
	a.TokenHash, a.TokenPrefix = hash, token[:10]
	a.CreatedAtMs, a.CreatedBy = time.Now().UnixMilli(), by
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.apps[a.Name] != nil {
		return App{}, "", fmt.Errorf("%w: application %q already has a token (revoke it first)", ErrExists, a.Name)
	}
	if err := r.store.PutApp(a.Name, encodeApp(&a)); err != nil {
		return App{}, "", err
	}
	stored := a
	r.apps[a.Name], r.byToken[hash] = &stored, &stored
	if a.Admin && !a.Setup {
		r.dropSetupLocked()
	}
	return a, token, nil
}

// Revoke removes an application's token; requests and open streams with
// it fail from now on.
func (r *Registry) Revoke(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revokeLocked(name)
}

func (r *Registry) revokeLocked(name string) error {
	a := r.apps[name]
	if a == nil {
		return fmt.Errorf("%w: no application %q", ErrNotFound, name)
	}
	if err := r.store.DeleteApp(name); err != nil {
		return err
	}
	delete(r.apps, name)
	delete(r.byToken, a.TokenHash)
	if ch := r.revoked[a.TokenHash]; ch != nil {
		close(ch)
		delete(r.revoked, a.TokenHash)
	}
	return nil
}

// dropSetupLocked removes the one-time setup token once a real
// administrator exists.
func (r *Registry) dropSetupLocked() {
	for name, a := range r.apps {
		if a.Setup {
			r.revokeLocked(name)
		}
	}
}

// EnsureAdmin creates the one-time setup token when no administrator
// exists and returns it ("" when there is one).
func (r *Registry) EnsureAdmin() (string, error) {
	r.mu.RLock()
	for _, a := range r.apps {
		if a.Admin && !a.Setup {
			r.mu.RUnlock()
			return "", nil
		}
	}
	for _, u := range r.users {
		if u.Role == RoleAdmin {
			r.mu.RUnlock()
			return "", nil
		}
	}
	var setup []string
	for name, a := range r.apps {
		if a.Setup {
			setup = append(setup, name)
		}
	}
	r.mu.RUnlock()
	for _, name := range setup { // a new one at every start until used
		if err := r.Revoke(name); err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	_, token, err := r.Create(App{Name: "setup", Admin: true, Setup: true}, "first start")
	return token, err
}

// List returns the applications by name (without token hashes).
func (r *Registry) List() []App {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]App, 0, len(r.apps))
	for _, a := range r.apps {
		c := *a
		c.TokenHash = ""
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Authenticate returns the application of a token and a channel closed
// when the token is revoked.
func (r *Registry) Authenticate(token string) (*App, <-chan struct{}, error) {
	if token == "" {
		return nil, nil, fmt.Errorf("%w: no token: pass one with --token, DMQ_TOKEN or client.WithToken", ErrUnauthenticated)
	}
	hash := hashToken(token)
	r.mu.RLock()
	a := r.byToken[hash]
	ch := r.revoked[hash]
	r.mu.RUnlock()
	if a == nil && r.CatchUp != nil && r.CatchUp() {
		r.mu.RLock()
		a, ch = r.byToken[hash], r.revoked[hash]
		r.mu.RUnlock()
	}
	if a == nil {
		return nil, nil, fmt.Errorf("%w: unknown or revoked token", ErrUnauthenticated)
	}
	if ch == nil {
		r.mu.Lock()
		if ch = r.revoked[hash]; ch == nil && r.byToken[hash] != nil {
			ch = make(chan struct{})
			r.revoked[hash] = ch
		}
		r.mu.Unlock()
		if ch == nil { // revoked meanwhile
			return nil, nil, fmt.Errorf("%w: unknown or revoked token", ErrUnauthenticated)
		}
	}
	return a, ch, nil
}

// Valid reports whether the application's token is still valid.
func (r *Registry) Valid(a *App) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byToken[a.TokenHash] == a
}

// Allowed checks an action on a topic (and, for Subscribe, a group; ""
// when no group is involved).
func (a *App) Allowed(action Action, topic, group string) error {
	if a.Admin {
		return nil
	}
	for _, g := range a.Grants {
		if !Match(g.Pattern, topic) {
			continue
		}
		switch {
		case g.Manage:
			return nil // managing a topic includes using it
		case action == Publish && g.Publish:
			return nil
		case action == Subscribe && g.Subscribe && (group == "" || len(g.Groups) == 0 || slices.Contains(g.Groups, group)):
			return nil
		}
	}
	what := string(action)
	if action == Subscribe && group != "" {
		what = fmt.Sprintf("subscribe with group %q", group)
	}
	return fmt.Errorf("%w: %s may not %s on topic %q", ErrDenied, a.Describe(), what, topic)
}

// Sees reports whether the application has any grant on the topic (it
// may then read its registry entry, stats and traces).
func (a *App) Sees(topic string) bool {
	if a.Admin {
		return true
	}
	for _, g := range a.Grants {
		if Match(g.Pattern, topic) {
			return true
		}
	}
	return false
}

// RequireSees fails unless the application has a grant on the topic.
func (a *App) RequireSees(topic string) error {
	if a.Sees(topic) {
		return nil
	}
	return fmt.Errorf("%w: %s has no grant on topic %q", ErrDenied, a.Describe(), topic)
}

// RequireAdmin fails unless the application is an administrator.
func (a *App) RequireAdmin(what string) error {
	if a.Admin {
		return nil
	}
	return fmt.Errorf("%w: %s may not %s: only administrators may", ErrDenied, a.Describe(), what)
}

// Describe names the caller for people: user "alice" or application "shop".
func (a *App) Describe() string {
	if name, ok := strings.CutPrefix(a.Name, "user:"); ok {
		return fmt.Sprintf("user %q", name)
	}
	return fmt.Sprintf("application %q", a.Name)
}

// BearerToken returns the token of an Authorization value "Bearer <token>". The
// scheme is case-insensitive (RFC 9110, section 11.1), and spaces around the token
// do not count.
func BearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
