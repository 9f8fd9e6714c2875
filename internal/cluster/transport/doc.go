// Package transport multiplexes every Raft group of a DMQ node over the node's single cluster
// listener.
//
// A node hosts many Raft groups (the metadata group and the message shards), each with its own
// hashicorp/raft NetworkTransport. They all share one TCP port: a Mux owns the listener and
// hands each accepted connection to the group it names, through a Layer that implements
// raft.StreamLayer. Connections are still one per (group, peer) pool entry; only the port is
// shared.
//
// # Handshake
//
// Every connection starts with a hello from the dialer and a reply from the acceptor, before
// any Raft traffic. Strings are length-prefixed by one byte, so each is at most 255 bytes.
//
//	hello: "DMQC" | version u8 (=1) | cluster id (u8 len + bytes) | group (u8 len + bytes) |
//	       sender node id (u8 len + bytes)
//	reply: "DMQC" | status u8 | acceptor node id (u8 len + bytes) | message (u16 BE len + bytes)
//
// Status 0 accepts the connection; any other status (see Status) refuses it, the acceptor
// closes the connection after the reply, and the dialer's Dial returns a *RefusedError
// carrying the status and the acceptor's message (for example which cluster id it expected).
// Both sides log a refusal. The handshake is bounded by a timeout on both sides.
//
// Over TLS (Config.TLS and DialTLS, mutual TLS) the handshake runs inside the TLS session,
// and each side checks that the other's certificate names the node id it announced (as the
// certificate's common name or one of its DNS names, see CertNames): the acceptor refuses
// a hello whose node id the dialer's certificate does not name (status 5), and the dialer
// drops a reply from a node its certificate does not name. So a certificate of the
// cluster's CA admits one node id, and a node cannot pass for another.
//
// # Fault injection
//
// A Mux built with a non-nil Config.Faults consults that link table, keyed by node ids, on
// every dial, accept, read and write: a blocked link refuses new connections and breaks
// existing ones; a delayed link sleeps before each write. Tests share one *Faults between
// the in-process nodes to block links, partition a set of nodes from the rest, add delay and
// heal. Without Faults, connections are not wrapped and nothing is checked.
package transport
