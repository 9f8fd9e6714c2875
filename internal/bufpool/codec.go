package bufpool

import (
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is gRPC's protobuf codec with its buffers taken from a Pool instead
// of gRPC's process-wide default pool, which zeroes them. A message larger
// than one HTTP/2 frame (a publish batch of a few KiB and more) is copied
// into one buffer before it is decoded: that buffer comes from here too.
// Install it with grpc.ForceServerCodecV2 or grpc.ForceCodecV2; its name is
// "proto", so peers see the usual content type.
//
// gRPC answers a request its codec cannot decode with Internal, as if the server
// had failed. With Malformed set, Unmarshal records the decode error there and
// returns nil instead, so that an interceptor can answer InvalidArgument (see
// Malformed).
type Codec struct {
	Pool      *Pool
	Malformed *Malformed
}

// Name is the content subtype, the same as gRPC's own protobuf codec.
func (Codec) Name() string { return "proto" }

// Marshal encodes v, which must be a protobuf message, into pooled memory
// when it is large enough to be worth pooling.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("proto codec: cannot marshal %T, want a proto.Message", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // the size was just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.Pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		c.Pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, c.Pool)}, nil
}

// Unmarshal decodes data into v, which must be a protobuf message. The
// decoded message copies what it keeps, so the buffer goes back at once.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto codec: cannot unmarshal into %T, want a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(c.Pool)
	defer buf.Free()
	err := proto.Unmarshal(buf.ReadOnlyData(), m)
	if err != nil && c.Malformed != nil {
		c.Malformed.put(m, err)
		return nil
	}
	return err
}

// Malformed holds the decode errors of requests a Codec could not decode, by
// message, until the server's interceptor takes them (Take) and refuses the call.
// Every decoded request must be passed to Take, or its entry stays.
type Malformed struct {
	n    atomic.Int64 // entries held: Take costs one atomic load while none is
	errs sync.Map     // proto.Message → error
}

func (t *Malformed) put(m proto.Message, err error) {
	t.errs.Store(m, err)
	t.n.Add(1)
}

// Take returns and forgets the decode error of m, nil if m was decoded.
func (t *Malformed) Take(m any) error {
	if t.n.Load() == 0 {
		return nil
	}
	if err, ok := t.errs.LoadAndDelete(m); ok {
		t.n.Add(-1)
		return err.(error)
	}
	return nil
}
