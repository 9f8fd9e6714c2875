// Package delay runs the clock of delayed messages: it knows, per topic,
// when the next delayed message is due, sleeps until the earliest of them,
// and then asks the broker to deliver what is due.
//
// The pending messages themselves are not here: they live in the metadata
// store, ordered by due time, so the next due message of a topic is the
// first key of its range (a seek, not a scan) and memory does not grow with
// the number pending — only with the number of topics. A restart needs one
// seek per topic; messages that fell due while the broker was down are
// delivered at once.
package delay

import (
	"sync"
	"time"
)

// FireFunc delivers the messages of topic due at or before nowMs and
// returns when the next one is due (ok false when none is pending).
type FireFunc func(topic string, nowMs int64) (nextMs int64, ok bool)

// Scheduler wakes FireFunc for each topic when its next message is due.
type Scheduler struct {
	fire FireFunc

	now func() time.Time
	// wake has room for one signal: Schedule sends to it without blocking
	// when a topic's next due time moved earlier.
	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	mu struct {
		sync.Mutex
		next map[string]int64 // topic → due time of its next message (ms)
	}
}

// New returns a scheduler that tells the time with now (nil: time.Now); Run starts it.
func New(fire FireFunc, now func() time.Time) *Scheduler {
	if now == nil {
		now = time.Now
	}
	s := &Scheduler{fire: fire, now: now, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.mu.next = make(map[string]int64)
	return s
}

// Schedule notes that topic has a message due at dueMs.
func (s *Scheduler) Schedule(topic string, dueMs int64) {
	s.mu.Lock()
	cur, ok := s.mu.next[topic]
	if ok && cur <= dueMs {
		s.mu.Unlock()
		return
	}
	s.mu.next[topic] = dueMs
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Forget drops a topic (deleted).
func (s *Scheduler) Forget(topic string) {
	s.mu.Lock()
	delete(s.mu.next, topic)
	s.mu.Unlock()
}

// NextDue returns when topic's next message is due, as far as the
// scheduler knows.
func (s *Scheduler) NextDue(topic string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.mu.next[topic]
	return d, ok
}

// Run is the scheduler loop: it sleeps until the earliest due time or a
// Schedule that moved one earlier, fires every due topic, and stops when
// Stop is called.
func (s *Scheduler) Run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := s.now()
		due, wait := s.dueTopics(now.UnixMilli())
		for _, topic := range due {
			next, ok := s.fire(topic, now.UnixMilli())
			if ok {
				s.Schedule(topic, next)
			}
		}
		if len(due) > 0 {
			continue // time passed while firing: look again
		}
		timer.Reset(wait)
		select {
		case <-s.quit:
			return
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// dueTopics removes and returns the topics due at nowMs, and how long to
// sleep until the next one otherwise.
func (s *Scheduler) dueTopics(nowMs int64) ([]string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	wait := time.Hour
	for topic, at := range s.mu.next {
		if at <= nowMs {
			due = append(due, topic)
			delete(s.mu.next, topic)
		} else {
			wait = min(wait, time.Duration(at-nowMs)*time.Millisecond)
		}
	}
	return due, wait
}

// Stop ends Run and waits for it.
func (s *Scheduler) Stop() {
	close(s.quit)
	<-s.done
}
