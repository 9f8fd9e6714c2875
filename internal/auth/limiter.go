package auth

import (
	"sync"
	"time"
)

// LoginLimiter slows password guessing: after FreeFailures failed logins
// for the same user name or from the same address, each further attempt
// must wait twice as long as the previous one (1 s, 2 s, 4 s... up to 5
// minutes) after the last failure. A success clears the user's count.
type LoginLimiter struct {
	mu       sync.Mutex
	failures map[string]failures
	now      func() time.Time
}

type failures struct {
	n    int
	last time.Time
}

// FreeFailures is how many failed logins go unpunished.
const FreeFailures = 5

const maxLoginDelay = 5 * time.Minute

// NewLoginLimiter returns an empty limiter.
func NewLoginLimiter() *LoginLimiter {
	return &LoginLimiter{failures: map[string]failures{}, now: time.Now}
}

// Wait returns how long the next attempt for user from addr must wait
// (0: it may go ahead).
func (l *LoginLimiter) Wait(user, addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range []string{"u:" + user, "a:" + addr} {
		f := l.failures[k]
		if f.n < FreeFailures {
			continue
		}
		delay := min(time.Second<<min(f.n-FreeFailures, 20), maxLoginDelay)
		wait = max(wait, f.last.Add(delay).Sub(l.now()))
	}
	return max(wait, 0)
}

// Failed counts a failed login.
func (l *LoginLimiter) Failed(user, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.failures) > 100_000 { // bounded under a flood of names
		for k, f := range l.failures {
			if now.Sub(f.last) > maxLoginDelay {
				delete(l.failures, k)
			}
		}
	}
	for _, k := range []string{"u:" + user, "a:" + addr} {
		f := l.failures[k]
		l.failures[k] = failures{n: f.n + 1, last: now}
	}
}

// Succeeded clears the user's failures.
func (l *LoginLimiter) Succeeded(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, "u:"+user)
}
