package cluster

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLeader is matched (errors.Is) by every *NotLeaderError: the command was sent to a
	// replica that is not the group's leader.
	ErrNotLeader = errors.New("not leader")

	// ErrOutcomeUnknown is matched when a command was handed to Raft but its fate is unknown:
	// leadership was lost before it committed, or the caller's context ended first. It may
	// still be applied; retry only with an idempotent command (DMQ's client message ids).
	ErrOutcomeUnknown = errors.New("outcome unknown: the command may or may not be applied")

	// ErrDamagedLog is matched when a group's Raft log on disk cannot be read or repaired:
	// the node refuses to start, with the file and the remedy in the error.
	ErrDamagedLog = errors.New("cluster: damaged raft log")

	// ErrShutdown is returned once the group or its node is shut down.
	ErrShutdown = errors.New("cluster: shut down")
)

// NotLeaderError is returned by Group.Apply, Barrier and the membership calls when this
// replica is not the group's leader. LeaderID and LeaderAddr name the leader this replica
// knows of (empty while an election runs), so an RPC layer can redirect the client or answer
// Unavailable.
type NotLeaderError struct {
	Group      string
	Node       string // the replica that refused
	LeaderID   string
	LeaderAddr string
	// MaybeApplied is set when leadership was lost after the command entered the log: it may
	// still commit under the next leader (errors.Is(err, ErrOutcomeUnknown) is then true).
	MaybeApplied bool
	// Err is hashicorp/raft's error (raft.ErrNotLeader, raft.ErrLeadershipLost, ...).
	Err error
}

func (e *NotLeaderError) Error() string {
	leader := "leader unknown"
	if e.LeaderID != "" || e.LeaderAddr != "" {
		leader = fmt.Sprintf("leader is %s at %s", e.LeaderID, e.LeaderAddr)
	}
	s := fmt.Sprintf("cluster: group %s on node %s: not leader (%s)", e.Group, e.Node, leader)
	if e.MaybeApplied {
		s += ": leadership lost after the command was sent, it may still be applied"
	}
	return s
}

// Is makes errors.Is(err, ErrNotLeader) true, and errors.Is(err, ErrOutcomeUnknown) when
// MaybeApplied.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || (e.MaybeApplied && target == ErrOutcomeUnknown)
}

// Unwrap returns hashicorp/raft's error.
func (e *NotLeaderError) Unwrap() error { return e.Err }
