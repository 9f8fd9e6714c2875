package broker

import (
	"sync"
)

// Delivery is one message handed to a subscription.
type Delivery struct {
	Offset      uint64
	Attempt     uint32
	LastFailure string // why the previous attempt failed
	Payload     []byte // the stored record; decode with package message
}

// Subscription is one consumer attached to a group. The dispatcher pushes
// deliveries to it (never more than the credit granted); the API layer takes
// them with Take and sends them on the wire.
type Subscription struct {
	g        *group
	clientID string

	// Guarded by g.mu: the cursor it consumes from and its remaining credit.
	cur    *cursor
	credit int

	mu struct {
		sync.Mutex
		pending []Delivery
		err     error // set once the subscription ended
	}
	// ready has room for one signal: push sends to it without blocking.
	ready chan struct{}
	done  chan struct{}
	once  sync.Once
}

// ClientID is the consumer's client id.
func (s *Subscription) ClientID() string { return s.clientID }

// Ready is signalled when deliveries are waiting for Take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Done is closed when the subscription ended; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended, nil while it runs.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}

// Take removes and returns the waiting deliveries.
func (s *Subscription) Take() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.mu.pending
	s.mu.pending = nil
	return d
}

// push is called by the dispatcher with g.mu held.
func (s *Subscription) push(batch []Delivery) {
	s.credit -= len(batch)
	s.mu.Lock()
	s.mu.pending = append(s.mu.pending, batch...)
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Grant adds n credits: the broker may send n more messages.
func (s *Subscription) Grant(n uint32) error { return s.g.grant(s, n) }

// Ack acknowledges delivered messages by offset.
func (s *Subscription) Ack(offs []uint64) error { return s.g.ackOrNack(s.clientID, offs, false, "") }

// Nack gives delivered messages back for redelivery.
func (s *Subscription) Nack(offs []uint64, reason string) error {
	return s.g.ackOrNack(s.clientID, offs, true, reason)
}

// Close detaches the subscription; its unacked messages are redelivered.
func (s *Subscription) Close() {
	s.end(nil)
	s.g.detach(s)
}

// end marks the subscription ended with err (nil for a normal close).
func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		if err == nil {
			err = errorf(KindUnavailable, "subscription closed")
		}
		s.mu.err = err
		s.mu.Unlock()
		close(s.done)
	})
}
