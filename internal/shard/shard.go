// Package shard says which shard of a cluster holds a topic and which topic a request
// of the dmq.v1 API is about. Server and SDK share it: the server routes each call to
// the broker of the topic's shard (or names that shard's leader), the SDK remembers the
// leader of each shard it has been sent to.
//
// A cluster's topics are spread over a fixed number of shards, chosen when the cluster
// is created, by a hash of the topic's name: every node and client computes the same
// placement without asking anyone. Calls that name no topic (users, tokens, the audit
// log, client heartbeats) belong to the first shard, which holds the cluster-wide state.
package shard

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

// Max is the most shards a cluster may have.
const Max = 64

// Meta is the name of the first shard, which also holds the cluster-wide state.
const Meta = "s0"

// Name is the name of shard i: "s0", "s1", ...
func Name(i int) string { return "s" + strconv.Itoa(i) }

// Index parses a shard name made by Name.
func Index(name string) (int, error) {
	s, ok := strings.CutPrefix(name, "s")
	i, err := strconv.Atoi(s)
	if !ok || err != nil || i < 0 || i >= Max || Name(i) != name {
		return 0, fmt.Errorf("shard: %q is not a shard name (s0 to s%d)", name, Max-1)
	}
	return i, nil
}

// Of is the index of the shard that holds topic in a cluster of n shards (n >= 1); ""
// (a call that names no topic) is the first shard's.
func Of(topic string, n int) int {
	if n <= 1 || topic == "" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int(h.Sum32() % uint32(n))
}

// TopicOf returns the topic a request names, if it names one. Requests for a list of
// topics, for users, tokens, the audit log and clients name none.
func TopicOf(req any) (string, bool) {
	var t string
	switch r := req.(type) {
	case *dmqv1.CreateTopicRequest:
		t = r.GetName()
	case *dmqv1.GetTopicRequest:
		t = r.GetName()
	case *dmqv1.TopicDecision:
		t = r.GetName()
	case *dmqv1.DeleteTopicRequest:
		t = r.GetName()
	case *dmqv1.PublishRequest:
		t = r.GetTopic()
	case *dmqv1.CreateGroupRequest:
		t = r.GetTopic()
	case *dmqv1.GetGroupRequest:
		t = r.GetTopic()
	case *dmqv1.ListGroupsRequest:
		t = r.GetTopic()
	case *dmqv1.SubscribeRequest:
		t = r.GetStart().GetTopic()
	case *dmqv1.AckRequest:
		t = r.GetTopic()
	case *dmqv1.NackRequest:
		t = r.GetTopic()
	case *dmqv1.ResetGroupRequest:
		t = r.GetTopic()
	case *dmqv1.DeleteGroupRequest:
		t = r.GetTopic()
	case *dmqv1.ListDeadLettersRequest:
		t = r.GetTopic()
	case *dmqv1.GetDeadLetterRequest:
		t = r.GetTopic()
	case *dmqv1.DeadLetterSelector:
		t = r.GetTopic()
	case *dmqv1.ListDelayedRequest:
		t = r.GetTopic()
	case *dmqv1.CancelDelayedRequest:
		t = r.GetTopic()
	case *dmqv1.TopicStatsRequest:
		t = r.GetTopic()
	case *dmqv1.GetTraceRequest:
		t = r.GetTopic()
	case *dmqv1.SearchTraceRequest:
		t = r.GetTopic()
	}
	return t, t != ""
}
