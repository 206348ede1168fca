package bufpool

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A message survives Marshal and Unmarshal at every size around gRPC's
// pooling threshold, whole and split into frames as the transport hands
// it over, and stays intact after its buffers go back to the pool and are
// reused.
func TestCodecRoundTrip(t *testing.T) {
	c := Codec{Pool: new(Pool)}
	for _, n := range []int{0, 1, 1000, 1023, 1024, 1025, 16 << 10, 48 << 10, 1 << 20} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + n)
		}
		data, err := c.Marshal(wrapperspb.Bytes(payload))
		if err != nil {
			t.Fatal(err)
		}
		wire := data.Materialize()
		data.Free()
		for _, frame := range []int{len(wire) + 1, 16 << 10, 1000} {
			var split mem.BufferSlice
			for off := 0; off < len(wire); off += frame {
				split = append(split, mem.SliceBuffer(wire[off:min(off+frame, len(wire))]))
			}
			var got wrapperspb.BytesValue
			if err := c.Unmarshal(split, &got); err != nil {
				t.Fatalf("%d bytes in frames of %d: %v", n, frame, err)
			}
			// Reuse the pool's buffers before looking: the parsed message
			// must not alias them.
			for range 4 {
				b := c.Pool.Get(len(wire))
				clear(*b)
				c.Pool.Put(b)
			}
			if !bytes.Equal(got.Value, payload) {
				t.Fatalf("%d bytes in frames of %d: payload changed", n, frame)
			}
		}
		if want, _ := proto.Marshal(wrapperspb.Bytes(payload)); !bytes.Equal(wire, want) {
			t.Fatalf("%d bytes: wire form differs from proto.Marshal", n)
		}
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := c.Unmarshal(nil, 42); err == nil {
		t.Error("Unmarshal into an int: no error")
	}
}
