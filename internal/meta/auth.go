package meta

import "github.com/cockroachdb/pebble/v2"

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
