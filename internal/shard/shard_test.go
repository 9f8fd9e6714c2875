package shard

import (
	"fmt"
	"slices"
	"testing"

	dmqv1 "github.com/dmqio/dmq/api/dmq/v1"
)

func TestOfSpreadsTopicsAndKeepsCallsWithoutTopicOnTheFirst(t *testing.T) {
	if got := Of("", 3); got != 0 {
		t.Fatalf("Of(\"\", 3) = %d: calls naming no topic belong to the first shard", got)
	}
	counts := make([]int, 3)
	for i := range 3000 {
		k := Of(fmt.Sprintf("prod.shop.orders-%d", i), 3)
		if k < 0 || k >= 3 {
			t.Fatalf("Of gave shard %d of 3", k)
		}
		counts[k]++
	}
	for k, n := range counts {
		if n < 800 || n > 1200 {
			t.Fatalf("shard %d holds %d of 3000 topics (%v): the hash does not spread", k, n, counts)
		}
	}
	if Of("prod.shop.orders", 1) != 0 {
		t.Fatal("one shard holds everything")
	}
}

func TestIndexParsesOnlyShardNames(t *testing.T) {
	for _, bad := range []string{"", "s", "x1", "s-1", "s01", "s64", "S1"} {
		if _, err := Index(bad); err == nil {
			t.Errorf("Index(%q) accepted", bad)
		}
	}
	if i, err := Index(Name(7)); err != nil || i != 7 {
		t.Fatalf("Index(Name(7)) = %d, %v", i, err)
	}
}

func TestTopicOf(t *testing.T) {
	for _, c := range []struct {
		req  any
		want string
	}{
		{&dmqv1.CreateTopicRequest{Name: "a.b.c"}, "a.b.c"},
		{&dmqv1.PublishRequest{Topic: "a.b.d"}, "a.b.d"},
		{&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Start{Start: &dmqv1.SubscribeStart{Topic: "a.b.e"}}}, "a.b.e"},
		{&dmqv1.SubscribeRequest{Request: &dmqv1.SubscribeRequest_Credit{Credit: 5}}, ""},
		{&dmqv1.CreateTokenRequest{App: "x"}, ""},
		{&dmqv1.ListTopicsRequest{}, ""},
	} {
		got, ok := TopicOf(c.req)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("TopicOf(%T) = %q, %v; want %q", c.req, got, ok, c.want)
		}
	}
}

func TestPlacement(t *testing.T) {
	members := []string{"n3", "n1", "n5", "n2", "n4"}
	for _, tc := range []struct {
		i, replicas int
		want        []string
	}{
		{0, 3, []string{"n1", "n2", "n3", "n4", "n5"}}, // the first shard is everywhere
		{1, 3, []string{"n2", "n3", "n4"}},
		{4, 3, []string{"n5", "n1", "n2"}},
		{6, 3, []string{"n2", "n3", "n4"}},
		{2, 0, []string{"n3", "n4", "n5", "n1", "n2"}}, // every member, led by the 3rd
		{2, 9, []string{"n3", "n4", "n5", "n1", "n2"}},
		{3, 1, []string{"n4"}},
	} {
		got := Placement(tc.i, members, tc.replicas)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Placement(%d, %v, %d) = %v, want %v", tc.i, members, tc.replicas, got, tc.want)
		}
	}
	// Each node keeps as many shards as the others, give or take one.
	count := map[string]int{}
	for i := 1; i < 11; i++ {
		for _, id := range Placement(i, members, 3) {
			count[id]++
		}
	}
	for id, n := range count {
		if n != 6 {
			t.Errorf("node %s keeps %d of 10 shards × 3 replicas over 5 nodes, want 6", id, n)
		}
	}
	if Placement(1, nil, 3) != nil {
		t.Error("a placement without members")
	}
}

func TestPlacementAvoiding(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4", "n5"}
	deadSet := func(ids ...string) func(string) bool {
		return func(id string) bool { return slices.Contains(ids, id) }
	}
	for _, tc := range []struct {
		i    int
		dead []string
		want []string
	}{
		{1, nil, []string{"n2", "n3", "n4"}},
		{1, []string{"n5"}, []string{"n2", "n3", "n4"}},       // not placed: nothing moves
		{1, []string{"n3"}, []string{"n2", "n4", "n5"}},       // n5, next after the placement
		{1, []string{"n2"}, []string{"n3", "n4", "n5"}},       // the leader's place goes to n3
		{4, []string{"n1", "n2"}, []string{"n5", "n3", "n4"}}, // wraps around, skips placed
		{1, []string{"n2", "n3", "n4", "n5"}, []string{"n1"}}, // as many as are alive
		{0, []string{"n2"}, []string{"n1", "n2", "n3", "n4", "n5"}},
	} {
		got := PlacementAvoiding(tc.i, members, 3, deadSet(tc.dead...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("PlacementAvoiding(%d, dead %v) = %v, want %v", tc.i, tc.dead, got, tc.want)
		}
	}
}
