package meta

import (
	"bytes"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
)

// Applications and their hashed tokens (package auth), as JSON:
//
//	au/<name> → auth.App

func appKey(name string) []byte { return append([]byte("au/"), name...) }

// PutApp stores an application record durably.
func (s *Store) PutApp(name string, record []byte) error {
	return s.set(appKey(name), record, pebble.Sync)
}

// DeleteApp removes an application record durably.
func (s *Store) DeleteApp(name string) error {
	return s.del(appKey(name), pebble.Sync)
}

// Apps calls fn with every application record.
func (s *Store) Apps(fn func(record []byte) error) error {
	return s.scan([]byte("au/"), func(_, v []byte) error { return fn(v) })
}

// Console users (package auth), as JSON with bcrypt password hashes:
//
//	uu/<name> → auth.User

func userKey(name string) []byte { return append([]byte("uu/"), name...) }

// PutUser stores a user record durably.
func (s *Store) PutUser(name string, record []byte) error {
	return s.set(userKey(name), record, pebble.Sync)
}

// DeleteUser removes a user record durably.
func (s *Store) DeleteUser(name string) error {
	return s.del(userKey(name), pebble.Sync)
}

// Users calls fn with every user record.
func (s *Store) Users(fn func(record []byte) error) error {
	return s.scan([]byte("uu/"), func(_, v []byte) error { return fn(v) })
}

// Console sessions (package auth), as JSON, by the SHA-256 of their id (the id itself,
// a bearer secret, is not stored):
//
//	se/<hash> → auth.Session

func sessionKey(hash string) []byte { return append([]byte("se/"), hash...) }

// PutSession stores a session record durably.
func (s *Store) PutSession(hash string, record []byte) error {
	return s.set(sessionKey(hash), record, pebble.Sync)
}

// DeleteSession removes a session record durably.
func (s *Store) DeleteSession(hash string) error {
	return s.del(sessionKey(hash), pebble.Sync)
}

// Sessions calls fn with every session record.
func (s *Store) Sessions(fn func(record []byte) error) error {
	return s.scan([]byte("se/"), func(_, v []byte) error { return fn(v) })
}

// authPrefixes are the keys of what package auth keeps.
var authPrefixes = [][]byte{[]byte("au/"), []byte("uu/"), []byte("se/")}

// OnAuthReplicated sets fn to be called after a replicated write (ApplyReplicated) that
// changed applications, users or sessions: a replica's registry reloads then. fn runs
// on the apply path and must not block.
func (s *Store) OnAuthReplicated(fn func()) { s.onAuth.Store(&fn) }

// touchesAuth reports whether a batch representation writes a key of package auth.
func touchesAuth(repr []byte) bool {
	r := batchrepr.Read(repr)
	for {
		_, key, _, ok, err := r.Next()
		if !ok || err != nil {
			return false
		}
		for _, p := range authPrefixes {
			if bytes.HasPrefix(key, p) {
				return true
			}
		}
	}
}
