// Package bufpool is the buffer pool DMQ gives gRPC for the frames and
// messages it reads and writes.
//
// gRPC's default pool zeroes every buffer it hands out, across the buffer's
// whole capacity, to avoid exposing old data; in DMQ's publish path that
// clearing was a tenth of the broker's CPU. gRPC overwrites every byte of
// the length it asks for (it reads frames with io.ReadFull and marshals into
// the buffer), so this pool returns buffers as they were put back.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 8  // smallest pooled capacity: 256 B
	maxShift = 24 // largest pooled capacity: 16 MiB
)

// Pool implements google.golang.org/grpc/mem.BufferPool with one sync.Pool
// per power-of-two capacity. Larger requests are allocated and dropped.
type Pool struct {
	tiers [maxShift - minShift + 1]sync.Pool
}

// New returns an empty pool.
func New() *Pool { return &Pool{} }

// Get returns a buffer of the given length whose contents are undefined.
func (p *Pool) Get(length int) *[]byte {
	k := tierFor(length)
	if k < 0 {
		b := make([]byte, length)
		return &b
	}
	if v, ok := p.tiers[k].Get().(*[]byte); ok {
		*v = (*v)[:length]
		return v
	}
	b := make([]byte, length, 1<<(minShift+k))
	return &b
}

// Put gives a buffer back; it lands in the largest tier its capacity fills.
func (p *Pool) Put(buf *[]byte) {
	c := cap(*buf)
	if c < 1<<minShift {
		return
	}
	k := bits.Len(uint(c)) - 1 - minShift // floor(log2(c)) - minShift
	if k >= len(p.tiers) {
		return
	}
	p.tiers[k].Put(buf)
}

// tierFor returns the smallest tier whose capacity holds length, or -1
// when length is above the largest.
func tierFor(length int) int {
	if length <= 1<<minShift {
		return 0
	}
	k := bits.Len(uint(length-1)) - minShift // ceil(log2(length)) - minShift
	if k >= maxShift-minShift+1 {
		return -1
	}
	return k
}
