package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// SessionTTL is how long a console login lasts.
const SessionTTL = 12 * time.Hour

// Session is a logged-in console user. CSRF must come back in the
// X-CSRF-Token header of every state-changing request.
type Session struct {
	ID, CSRF   string
	User, Role string
	Department string
	Expires    time.Time
}

// SessionStore persists sessions, by the SHA-256 of their id (the id itself is a
// bearer secret and is not stored). With one, sessions outlive a restart, and on a
// cluster every node knows them: a console request may reach any node.
type SessionStore interface {
	PutSession(hash string, record []byte) error
	DeleteSession(hash string) error
	Sessions(fn func(record []byte) error) error
}

// sessionRecord is a stored session.
type sessionRecord struct {
	Hash       string    `json:"hash"`
	CSRF       string    `json:"csrf"`
	User       string    `json:"user"`
	Role       string    `json:"role"`
	Department string    `json:"department,omitempty"`
	Expires    time.Time `json:"expires"`
}

// sessions keeps the live sessions in memory, by the hash of their id, written
// through to store when there is one.
type sessions struct {
	store SessionStore // nil: in memory only (a restart logs everyone out)
	mu    sync.Mutex
	byID  map[string]sessionRecord
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func (s *sessions) start(u *User) (Session, error) {
	ss := Session{ID: randomID(), CSRF: randomID(), User: u.Name, Role: u.Role, Department: u.Department, Expires: time.Now().Add(SessionTTL)}
	rec := sessionRecord{Hash: sessionHash(ss.ID), CSRF: ss.CSRF, User: ss.User, Role: ss.Role, Department: ss.Department, Expires: ss.Expires}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]sessionRecord{}
	}
	now := time.Now()
	for h, old := range s.byID { // forget expired sessions as new ones start
		if now.After(old.Expires) {
			if s.store != nil && s.store.DeleteSession(h) != nil {
				continue // kept for the next try
			}
			delete(s.byID, h)
		}
	}
	if s.store != nil {
		b, _ := json.Marshal(rec)
		if err := s.store.PutSession(rec.Hash, b); err != nil {
			return Session{}, fmt.Errorf("record the session: %w", err)
		}
	}
	s.byID[rec.Hash] = rec
	return ss, nil
}

func (s *sessions) get(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.byID[sessionHash(id)]
	if !ok || time.Now().After(rec.Expires) {
		return Session{}, false // an expired record goes when the next session starts
	}
	return Session{ID: id, CSRF: rec.CSRF, User: rec.User, Role: rec.Role, Department: rec.Department, Expires: rec.Expires}, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(sessionHash(id))
}

func (s *sessions) endLocked(hash string) {
	if s.store != nil {
		s.store.DeleteSession(hash) // best effort: it expires anyway
	}
	delete(s.byID, hash)
}

func (s *sessions) endUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, rec := range s.byID {
		if rec.User == name {
			s.endLocked(h)
		}
	}
}

// load replaces the sessions in memory with the stored ones.
func (s *sessions) load() error {
	if s.store == nil {
		return nil
	}
	byID := map[string]sessionRecord{}
	err := s.store.Sessions(func(b []byte) error {
		var rec sessionRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Hash == "" {
			return fmt.Errorf("session record: %v", err)
		}
		byID[rec.Hash] = rec
		return nil
	})
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	s.mu.Lock()
	s.byID = byID
	s.mu.Unlock()
	return nil
}
