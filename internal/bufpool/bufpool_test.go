package bufpool

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var _ mem.BufferPool = (*Pool)(nil)

func TestGetReturnsTheLengthAskedWithRoomInItsTier(t *testing.T) {
	p := New()
	for _, n := range []int{0, 1, 255, 256, 257, 1000, 1024, 1025, 16 << 10, 1 << 24, 1<<24 + 1, 40 << 20} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(*b))
		}
		if n <= 1<<maxShift && cap(*b) > 2*max(n, 1<<minShift) {
			t.Fatalf("Get(%d) has capacity %d, more than twice what was asked", n, cap(*b))
		}
		p.Put(b)
	}
}

func TestBuffersAreReusedAcrossLengthsOfOneTier(t *testing.T) {
	p := New()
	b := p.Get(3000) // tier of 4 KiB
	(*b)[0] = 42
	p.Put(b)
	// sync.Pool may drop what it holds (a GC between Put and Get), so try a
	// few times; a reused buffer keeps its contents: it is not zeroed.
	for range 100 {
		c := p.Get(2100)
		if cap(*c) != 4096 {
			t.Fatalf("Get(2100) has capacity %d, want the 4 KiB tier", cap(*c))
		}
		if c == b {
			if (*c)[0] != 42 {
				t.Fatal("a reused buffer was cleared")
			}
			return
		}
		(*c)[0] = 42
		p.Put(c)
		b = c
	}
	t.Fatal("no buffer was ever reused")
}

func TestPutOfOddCapacitiesIsSafe(t *testing.T) {
	p := New()
	for _, c := range []int{0, 10, 300, 5000, 1 << 25} {
		b := make([]byte, 0, c)
		p.Put(&b)
	}
	// A 5000-byte buffer went to the 4 KiB tier: a Get from it must fit.
	for range 10 {
		b := p.Get(4096)
		if len(*b) != 4096 || cap(*b) < 4096 {
			t.Fatalf("Get(4096) = len %d cap %d", len(*b), cap(*b))
		}
	}
}

// The codec round-trips protobuf messages small and large (the large ones
// through pooled buffers), refuses what is not a protobuf message, and a
// decoded message does not share memory with the pooled buffer.
func TestCodecRoundTrip(t *testing.T) {
	c := Codec{Pool: New()}
	for _, n := range []int{10, 5000, 100_000} {
		in := wrapperspb.Bytes(bytes.Repeat([]byte{7}, n))
		data, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out := &wrapperspb.BytesValue{}
		if err := c.Unmarshal(data, out); err != nil {
			t.Fatal(err)
		}
		data.Free()
		// Dirty the pool's buffers: the decoded message must not change.
		for range 4 {
			b := c.Pool.Get(n + 16)
			for i := range *b {
				(*b)[i] = 0xEE
			}
			c.Pool.Put(b)
		}
		if !proto.Equal(in, out) {
			t.Fatalf("%d bytes: the decoded message differs from the encoded one", n)
		}
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("Marshal accepted a string")
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, &wrapperspb.BytesValue{}); err == nil {
		t.Fatal("Unmarshal accepted garbage")
	}
}
