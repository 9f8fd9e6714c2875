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
	sorted := sortedIDs(members)
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

// PlacementAvoiding is Placement with the nodes for which dead is true replaced: each
// by the next member after the placement, in the same order, that is neither dead nor
// placed already. The live nodes of the placement keep their place (the first is still
// the preferred leader unless it is dead), so a dead node's shards move to as few new
// nodes as possible, and come back once it is alive again.
func PlacementAvoiding(i int, members []string, replicas int, dead func(id string) bool) []string {
	placed := Placement(i, members, replicas)
	if i == 0 || replicas <= 0 || len(placed) < replicas {
		return placed // on every member: nowhere else to go
	}
	out := make([]string, 0, replicas)
	for _, id := range placed {
		if !dead(id) {
			out = append(out, id)
		}
	}
	sorted := sortedIDs(members)
	n := len(sorted)
	for k := replicas; len(out) < replicas && k < n; k++ {
		if id := sorted[(i+k)%n]; !dead(id) {
			out = append(out, id)
		}
	}
	return out
}

// sortedIDs is the member ids in order, each once.
func sortedIDs(members []string) []string {
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	return slices.Compact(sorted)
}
