package shard

import (
	"fmt"
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
