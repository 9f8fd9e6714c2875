// Package inbox stores each received DMQ message in a local file before it
// is acked, and runs the business handler from there.
//
// The flow of one message:
//
//  1. The consumer calls the Inbox's Handler, which writes the message to
//     the inbox file (a bbolt database; the commit is fsynced) and returns
//     nil, so the SDK acks it to the broker. If the write fails it returns
//     the error and the broker redelivers the message.
//  2. A pool of workers runs the business handler on stored messages. Success
//     deletes the entry. Failure (an error or a panic) keeps it, counts the
//     attempt, and schedules the next one with exponential backoff; after
//     MaxAttempts failures the entry is kept in state Failed until Retry.
//  3. Open resumes the entries a previous process left, so work survives a
//     crash or restart of the consumer process: the broker need not (and
//     does not) redeliver what it already got an ack for.
//
// In code:
//
//	ib, err := inbox.Open("billing.inbox", charge, inbox.Concurrency(4))
//	...
//	k, err := c.Subscribe(ctx, "prod.shop.orders", "billing", ib.Handler())
//	...
//	k.Close()  // first the consumer: no more stores
//	ib.Close() // then the inbox: waits for running handlers (their ctx is canceled)
//
// Stats, List, Retry and Delete inspect and repair the inbox while it runs.
//
// # Guarantees and caveats
//
//   - Once the broker has the ack, the local file is the only copy of the
//     message: losing the disk loses every message not yet processed. Keep the
//     file on durable storage, not on a temporary volume.
//   - Delivery stays at least once. A process that stored a message and died
//     before its ack reached the broker gets the message again; while the
//     entry is still in the inbox the copy is dropped (entries are keyed by
//     topic and message id), but once the entry was processed and deleted the
//     handler runs again. A handler killed mid-run also runs again, with the
//     same attempt number. Wrap the handler with the idempotency package to
//     drop those repeats too.
//   - One inbox serves one consumer group: two groups of one topic sharing an
//     inbox would see each other's messages as duplicates.
//   - There is no ordering: entries run by due time, several at once with
//     Concurrency above 1, and a failing entry does not hold back the others.
//   - The handler receives the stored message with Attempt counting local
//     attempts (1 on the first run from the inbox) and LastFailure holding
//     the previous local error.
//   - Memory is bounded: workers read a few due entries at a time through an
//     index ordered by next-attempt time, never the whole inbox. The file is
//     bounded only by MaxPending, unbounded by default.
package inbox
