package bufpool

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is gRPC's protobuf codec with its buffers taken from a Pool instead
// of gRPC's process-wide default pool, which zeroes them. A message larger
// than one HTTP/2 frame (a publish batch of a few KiB and more) is copied
// into one buffer before it is decoded: that buffer comes from here too.
// Install it with grpc.ForceServerCodecV2 or grpc.ForceCodecV2; its name is
// "proto", so peers see the usual content type.
type Codec struct{ Pool *Pool }

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
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
