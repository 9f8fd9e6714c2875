package idempotency

import "context"

// Store remembers which keys were processed. Implementations backed by SQL,
// Redis or similar plug in here; FileStore and MemoryStore are provided.
//
// Contract:
//   - A Store must be safe for concurrent use.
//   - Seen reports whether Record succeeded for key earlier (and the record
//     has not expired). An error makes Wrap nack the message without calling
//     the handler.
//   - Record is called only after the handler succeeded for key. Once it
//     returns nil the record must be durable: a later Seen, also after a
//     restart, reports true. Recording a key twice is not an error.
//   - Wrap passes Record a context that is not canceled when the consumer
//     closes, so that a handler that finished during shutdown is still
//     recorded; a Store that talks to a network should bound its own calls.
type Store interface {
	Seen(ctx context.Context, key string) (bool, error)
	Record(ctx context.Context, key string) error
}
