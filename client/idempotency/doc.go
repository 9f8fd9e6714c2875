// Package idempotency makes a DMQ handler safe against duplicate deliveries.
//
// DMQ delivers at least once: a message whose ack was lost, whose consumer
// died, or that a producer retransmitted can arrive again. Wrap records the
// business key of every message its handler processed in a durable Store and
// acks a repeat without calling the handler again:
//
//	store, err := idempotency.OpenFileStore("billing.idem")
//	...
//	defer store.Close()
//	k, err := c.Subscribe(ctx, "prod.shop.orders", "billing",
//		idempotency.Wrap(store, charge))
//
// # Keys
//
// By default the key is the message's Key (the business id, such as an order
// id) or, for a message without a key, its broker-assigned ID, prefixed with
// the topic so that two topics do not collide. Keying by Key means a second
// message with the same key is treated as a duplicate even if its body
// differs: the Key must name the business operation ("order-1:paid"), not
// only the entity, or use KeyBy to choose another key (a header, the
// producer's client message id). Two groups that consume the same topic in
// one process must not share a store without Namespace, or the second group
// would skip what the first one processed.
//
// # Guarantees and the remaining window
//
// The handler runs at most once per key among deliveries that see the record,
// and Wrap serializes deliveries of one key inside one process (a keyed
// lock), so two concurrent deliveries of a key do not both run the handler.
// The record is written after the handler succeeded, so a message whose
// handler succeeded is never lost by the wrapper. The price is a window: if
// the process dies, or Record fails, after the handler succeeded and before
// the record is durable, the message is redelivered and the handler runs
// again. Handlers whose effect must happen exactly once should write the key
// in the same transaction as their effect (a Store on the same SQL database),
// which this package cannot do for them. Across processes (several members of
// a cluster group) two deliveries of one key can still run concurrently; only
// a shared Store with an atomic claim could prevent that.
//
// Records expire: FileStore forgets a key after its TTL (7 days by default),
// so a duplicate arriving later than that is processed again.
package idempotency
