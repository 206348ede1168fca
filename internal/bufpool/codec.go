package bufpool

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is gRPC's proto codec ("proto") with its buffers from a Pool.
// gRPC's codec gathers a message that arrived in several HTTP/2 frames
// into a buffer from the default pool, which rounds anything over 32 KiB
// up to 1 MiB and clears all of it: for a 48 KiB WAV request, a 1 MiB
// memory clear per call. Here that buffer comes from the Pool, sized to
// the message and not cleared (the gather writes every byte of it), and
// goes back once the message is parsed: protobuf copies bytes fields out.
type Codec struct {
	Pool *Pool
}

var _ encoding.CodecV2 = Codec{}

// Name is "proto", so that peers see no difference.
func (Codec) Name() string { return "proto" }

// Marshal encodes v, into a Pool buffer when it is large enough for gRPC
// to pool at all.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("bufpool: cannot marshal %T: not a proto.Message", v)
	}
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	bp := c.Pool.Get(size)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*bp)[:0], m)
	if err != nil {
		c.Pool.Put(bp)
		return nil, err
	}
	*bp = b
	return mem.BufferSlice{mem.NewBuffer(bp, c.Pool)}, nil
}

// Unmarshal parses data into v.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("bufpool: cannot unmarshal into %T: not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(c.Pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
