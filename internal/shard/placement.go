package shard

import "slices"

// Placement is the nodes that keep replicas of shard i, out of the cluster's members
// (node ids), when each shard is kept by replicas of them (0, or more than there are:
// every member). The first shard, which holds the cluster-wide state every node reads,
// is on every member. Shard i's replicas are the members that follow the i-th in the
// order of their ids, wrapping around: shards spread evenly, and the first node of a
// shard's placement is the one that should lead it, so leaders spread too. Every node
// computes the same placement from the same members.
func Placement(i int, members []string, replicas int) []string {
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	n := len(sorted)
	if n == 0 {
		return nil
	}
	if i == 0 || replicas <= 0 || replicas >= n {
		// Every member, the preferred leader first.
		return append(sorted[i%n:], sorted[:i%n]...)
	}
	out := make([]string, 0, replicas)
	for k := range replicas {
		out = append(out, sorted[(i+k)%n])
	}
	return out
}
