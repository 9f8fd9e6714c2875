package auth

import (
	"crypto/rand"
	"encoding/base64"
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

// sessions live in memory: a restart logs everyone out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]Session
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) start(u *User) Session {
	ss := Session{ID: randomID(), CSRF: randomID(), User: u.Name, Role: u.Role, Department: u.Department, Expires: time.Now().Add(SessionTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]Session{}
	}
	now := time.Now()
	for id, old := range s.byID { // forget expired sessions as new ones start
		if now.After(old.Expires) {
			delete(s.byID, id)
		}
	}
	s.byID[ss.ID] = ss
	return ss
}

func (s *sessions) get(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if ok && time.Now().After(ss.Expires) {
		delete(s.byID, id)
		return Session{}, false
	}
	return ss, ok
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func (s *sessions) endUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.byID {
		if ss.User == name {
			delete(s.byID, id)
		}
	}
}
