package idempotency

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmqio/dmq/client"
)

// ErrNoKey is returned (and the message nacked) when the key function of
// KeyBy returns an empty key.
var ErrNoKey = errors.New("idempotency: empty key")

// Option configures Wrap.
type Option func(*options)

type options struct {
	key         func(*client.Message) string
	namespace   string
	onDuplicate func(*client.Message)
}

// KeyBy sets the function that names the business operation of a message
// (default DefaultKey). Its result is used as is, plus the Namespace prefix:
// include the topic yourself if the store is shared across topics.
func KeyBy(f func(m *client.Message) string) Option {
	return func(o *options) { o.key = f }
}

// Namespace prefixes every key with ns and a slash, so that stores shared
// by several groups or services keep their keys apart.
func Namespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// OnDuplicate is called for every delivery acked as a duplicate, without
// running the handler (for logs and metrics).
func OnDuplicate(f func(m *client.Message)) Option {
	return func(o *options) { o.onDuplicate = f }
}

// DefaultKey is the default key: the topic, then the message's Key or, for a
// message without a key, its broker-assigned ID. Topic names contain no
// slash, so keys of different topics cannot collide.
func DefaultKey(m *client.Message) string {
	if m.Key != "" {
		return m.Topic + "/key/" + m.Key
	}
	return m.Topic + "/id/" + m.ID
}

// locks serializes deliveries of one key across every handler Wrap returned
// in this process (two consumers of one group, or one with concurrency
// above 1). Keys of different stores rarely coincide, and when they do the
// cost is only that their deliveries take turns.
var locks = newKeyLocks()

// heldKey marks, in a handler's context, a key the delivery already holds,
// so that a handler wrapped twice with the same key does not wait for
// itself.
type heldKey struct{ key string }

// Wrap returns a handler that runs h at most once per key, as far as store
// remembers:
//   - if store has seen the key, it returns nil (the message is acked) and h
//     is not called;
//   - otherwise it runs h; if h fails (or panics) the error is returned
//     unchanged and nothing is recorded, so the redelivery runs h again;
//   - if h succeeded it records the key; if that fails the error is returned,
//     the message is nacked and the redelivery runs h again (see the package
//     documentation for this window).
//
// Deliveries of one key are serialized inside this process, whatever the
// consumers' concurrency and however many handlers Wrap returned. A delivery
// waiting for its key gives up when ctx is canceled and is nacked.
func Wrap(store Store, h client.Handler, opts ...Option) client.Handler {
	o := options{key: DefaultKey, onDuplicate: func(*client.Message) {}}
	for _, f := range opts {
		f(&o)
	}
	return func(ctx context.Context, m *client.Message) error {
		key := o.key(m)
		if key == "" {
			return fmt.Errorf("message %s of %s: %w", m.ID, m.Topic, ErrNoKey)
		}
		if o.namespace != "" {
			key = o.namespace + "/" + key
		}
		if ctx.Value(heldKey{key}) == nil {
			unlock, err := locks.lock(ctx, key)
			if err != nil {
				return fmt.Errorf("idempotency: wait for key %q: %w", key, err)
			}
			defer unlock()
			ctx = context.WithValue(ctx, heldKey{key}, true)
		}
		seen, err := store.Seen(ctx, key)
		if err != nil {
			return fmt.Errorf("idempotency: look up key %q: %w", key, err)
		}
		if seen {
			o.onDuplicate(m)
			return nil
		}
		if err := h(ctx, m); err != nil {
			return err
		}
		if err := store.Record(context.WithoutCancel(ctx), key); err != nil {
			return fmt.Errorf("idempotency: record key %q after the handler succeeded: %w", key, err)
		}
		return nil
	}
}
