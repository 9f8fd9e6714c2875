// Package cluster is the Raft layer of DMQ's cluster mode: a Node hosts many Raft groups
// (the metadata group "meta" and message shards "s0", "s1", ...) and replicates each group's
// log to its replicas with hashicorp/raft. The broker's shard state machines sit on top as
// each group's FSM; this package knows nothing about messages.
//
// # Model
//
// A Node has one identity (cluster id, node id), one data directory and one cluster listener.
// Every group on the node gets its own hashicorp/raft instance, log and stable store and
// snapshot store, and its own NetworkTransport; the transports share the listener through
// a transport.Mux, which reads a short handshake on each connection (cluster id, group,
// sender) and hands the connection to the group it names. See package transport for the
// handshake format.
//
//	<DataDir>/raft/identity              cluster_id= and node_id= lines, written on first start
//	<DataDir>/raft/<group>/wal/          raft-wal: the group's Raft log segments, and wal-meta (segments, term, vote)
//	<DataDir>/raft/<group>/snapshots/    the group's file snapshots (two kept)
//
// # Guarantees
//
//   - Group.Apply returns nil only after a quorum of the group's voters stored the command
//     (each with an fsync) and the local FSM applied it. Every replica applies the same
//     commands in the same order.
//   - A replica that is not the leader refuses Apply with a *NotLeaderError naming the
//     leader it knows of; the command is not in the log. When leadership is lost after the
//     command entered the log, or the caller's context ends first, the outcome is unknown
//     (ErrOutcomeUnknown): the command may still be applied, so a retry must be idempotent.
//   - A data directory is never reused under another cluster id or node id (Start refuses,
//     ErrIdentityMismatch, and changes nothing).
//   - Nodes started with the same Peers bootstrap the same configuration; a restarted node
//     keeps its state and never bootstraps again. Without Peers a node is a one-voter
//     cluster of itself; with Join it waits to be added by Group.AddVoter.
//
// # Caveats
//
//   - The FSM must be deterministic: same commands, same state, on every replica.
//   - IsLeader is a belief: a leader cut off from the others believes it until its lease
//     (LeaderLeaseTimeout) runs out. Apply or VerifyLeader prove leadership.
//   - A removed member is not always told so: if the leader stops replicating to it before
//     it learns of the removal, it stays a follower of nothing until shut down.
//   - hashicorp/raft does not expose followers' match indexes; Stats reports follower
//     health from heartbeat observations, and lag has to come from each replica's own Stats.
package cluster
