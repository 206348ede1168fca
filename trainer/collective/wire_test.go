package collective

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

func floats(n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(i)*0.5 - 3
	}
	if n > 0 {
		f[0] = float32(math.Inf(-1))
	}
	return f
}

// split cuts b into a BufferSlice of pieces of size k, as HTTP/2 frames
// would.
func split(b []byte, k int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(k, len(b))
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return s
}

// TestChunkEncodingIsProtobuf: what the codec sends is the protobuf
// encoding of collectivev1.Chunk, so generated clients can read it.
func TestChunkEncodingIsProtobuf(t *testing.T) {
	c := newCodec()
	for _, values := range []int{0, 100, 5000} {
		t.Run(fmt.Sprint(values), func(t *testing.T) {
			data, _ := encodeLE(floats(values))
			w := &wireChunk{op: 7, step: 3, offset: 1 << 40, kind: collectivev1.Kind_KIND_BROADCAST, length: 99, root: 2, data: data}
			out, err := c.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			var got collectivev1.Chunk
			enc := out.Materialize()
			if err := proto.Unmarshal(enc, &got); err != nil {
				t.Fatal(err)
			}
			if len(data) > 0 {
				// Data comes last, aligned to 4 bytes after gRPC's prefix.
				if off := len(enc) - len(data); !bytes.Equal(enc[off:], data) || (grpcPrefixLen+off)%4 != 0 {
					t.Errorf("payload at offset %d: not last or not aligned", off)
				}
				if len(got.Padding) > 3 {
					t.Errorf("padding of %d bytes", len(got.Padding))
				}
			}
			got.Padding = nil
			want := &collectivev1.Chunk{Op: 7, Step: 3, Offset: 1 << 40, Kind: collectivev1.Kind_KIND_BROADCAST, Length: 99, Root: 2, Data: data}
			if len(data) == 0 {
				want.Data = nil
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("decoded %v, want %v", &got, want)
			}
		})
	}
}

// TestChunkDecodingAcceptsProtobuf: the decoder reads any valid encoding
// (field order, unknown fields, any split into frames) without copying.
func TestChunkDecodingAcceptsProtobuf(t *testing.T) {
	f := floats(1000)
	data, _ := encodeLE(f)
	msg, err := proto.Marshal(&collectivev1.Chunk{Op: 1 << 33, Step: 5, Offset: 12345, Kind: collectivev1.Kind_KIND_ALL_REDUCE, Length: 1 << 20, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	// An unknown field of every wire type, a stale earlier data field that
	// the later one must replace, then the real message.
	var pre []byte
	pre = protowire.AppendTag(pre, 99, protowire.Fixed32Type)
	pre = protowire.AppendFixed32(pre, 1)
	pre = protowire.AppendTag(pre, 98, protowire.Fixed64Type)
	pre = protowire.AppendFixed64(pre, 1)
	pre = protowire.AppendTag(pre, 97, protowire.BytesType)
	pre = protowire.AppendBytes(pre, []byte("skip me"))
	pre = protowire.AppendTag(pre, fieldData, protowire.BytesType)
	pre = protowire.AppendBytes(pre, []byte{1, 2, 3, 4})
	full := append(pre, msg...)
	for _, k := range []int{1, 3, 7, 16384, len(full)} {
		t.Run(fmt.Sprintf("pieces=%d", k), func(t *testing.T) {
			var w wireChunk
			if err := newCodec().Unmarshal(split(full, k), &w); err != nil {
				t.Fatal(err)
			}
			defer w.free()
			if w.op != 1<<33 || w.step != 5 || w.offset != 12345 || w.kind != collectivev1.Kind_KIND_ALL_REDUCE || w.length != 1<<20 || w.dataLen != len(data) {
				t.Fatalf("decoded %+v", w)
			}
			got := make([]float32, len(f))
			copyLE(got, w.pieces)
			if !bitwiseEqual(got, f) {
				t.Fatal("payload differs after copyLE")
			}
			sum := make([]float32, len(f))
			copy(sum, f)
			addLE(sum, w.pieces)
			for i := range f {
				if want := f[i] + f[i]; math.Float32bits(sum[i]) != math.Float32bits(want) {
					t.Fatalf("addLE element %d: %g, want %g", i, sum[i], want)
				}
			}
		})
	}
}

func TestChunkDecodingRejectsGarbage(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
	}{
		{"truncated varint", []byte{0x08, 0x80}},
		{"bytes longer than message", []byte{0x22, 0x10, 1, 2}},
		{"field number zero", []byte{0x00, 0x01}},
		{"group wire type", []byte{0x0b}},
		{"truncated fixed64", []byte{0x09, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w wireChunk
			if err := newCodec().Unmarshal(split(tc.msg, 1), &w); err == nil {
				t.Fatalf("decoded %+v from garbage", w)
			}
		})
	}
}

// FuzzChunkDecoding: the zero-copy decoder never panics and agrees with
// the protobuf library on every message both accept.
func FuzzChunkDecoding(f *testing.F) {
	seed, _ := proto.Marshal(&collectivev1.Chunk{Op: 3, Step: 1, Offset: 9, Kind: 2, Length: 4, Root: 1, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
	f.Add(seed, 3)
	f.Add([]byte{0x22, 0x02, 1}, 1)
	f.Fuzz(func(t *testing.T, msg []byte, k int) {
		k = 1 + abs(k)%64
		var w wireChunk
		err := newCodec().Unmarshal(split(bytes.Clone(msg), k), &w)
		var ref collectivev1.Chunk
		refErr := proto.Unmarshal(msg, &ref)
		if err != nil || refErr != nil {
			return
		}
		defer w.free()
		var got []byte
		for _, p := range w.pieces {
			got = append(got, p...)
		}
		if w.op != ref.Op || w.step != ref.Step || w.offset != ref.Offset || w.kind != ref.Kind ||
			w.length != ref.Length || w.root != ref.Root || !bytes.Equal(got, ref.Data) {
			t.Fatalf("decoded %+v / %x, protobuf says %v", w, got, &ref)
		}
	})
}

func abs(k int) int {
	if k < 0 {
		return -k
	}
	return k
}

// TestPlans checks the schedule invariants the pipelining relies on: a
// chunk is forwarded exactly as it was received, the all-gather overwrites
// exactly what reduce-scatter sent, and every element is received.
func TestPlans(t *testing.T) {
	for n := 2; n <= 5; n++ {
		for _, length := range []int{0, 1, n - 1, 17, 1000} {
			for r := range n {
				p := ringAllReducePlan(r, n, length, 8)
				for i, s := range p.sends {
					if s.dep >= 0 && (p.recvs[s.dep].lo != s.lo || p.recvs[s.dep].hi != s.hi || p.recvs[s.dep].step+1 != s.step) {
						t.Fatalf("n=%d len=%d rank %d: send %d %+v depends on recv %+v", n, length, r, i, s, p.recvs[s.dep])
					}
				}
				covered := make([]int, length)
				for i, v := range p.recvs {
					if v.dep >= 0 && (p.sends[v.dep].lo != v.lo || p.sends[v.dep].hi != v.hi) {
						t.Fatalf("n=%d len=%d rank %d: recv %d %+v waits for send %+v", n, length, r, i, v, p.sends[v.dep])
					}
					if v.dep >= 0 == v.add {
						t.Fatalf("n=%d rank %d: recv %d: all-gather receives must wait for a send, reduce-scatter ones sum", n, r, i)
					}
					for e := v.lo; e < v.hi; e++ {
						covered[e]++
					}
				}
				// Each element arrives once in reduce-scatter (except in the
				// segment this rank sends first), once in all-gather (except
				// in the segment it completes).
				for e, c := range covered {
					if c < 1 || c > 2 {
						t.Fatalf("n=%d len=%d rank %d: element %d received %d times", n, length, r, e, c)
					}
				}
			}
			for root := range n {
				for r := range n {
					p := ringBroadcastPlan(r, n, root, length, 8)
					if r == root && len(p.recvs) != 0 || mod(r-root, n) == n-1 && len(p.sends) != 0 {
						t.Fatalf("n=%d root %d rank %d: plan %+v", n, root, r, p)
					}
				}
			}
		}
	}
}

// TestParseHead: the fields before the payload and the payload's place
// come out of a message's first bytes, for every cut that still holds the
// payload's length; shorter cuts and garbage say not ok.
func TestParseHead(t *testing.T) {
	data, _ := encodeLE(floats(300))
	w := wireChunk{op: 1 << 40, step: 3, offset: 12345, kind: collectivev1.Kind_KIND_BROADCAST, length: 1 << 33, root: 2, data: data}
	msg := append(w.appendHeader(nil), data...)
	hdr := len(msg) - len(data)
	for cut := 0; cut <= hdr+8; cut++ {
		got, off, n, ok := parseHead(msg[:cut])
		if cut < hdr {
			if ok {
				t.Fatalf("cut %d (< %d header bytes): ok", cut, hdr)
			}
			continue
		}
		if !ok || off != hdr || n != len(data) || got.op != w.op || got.step != w.step || got.offset != w.offset ||
			got.kind != w.kind || got.length != w.length || got.root != w.root {
			t.Fatalf("cut %d: %+v off %d n %d ok %v, want the header of %s at %d, %d bytes", cut, got, off, n, ok, describe(&w), hdr, len(data))
		}
	}
	for _, bad := range [][]byte{{0xff}, {0x08, 0x80}, {0x0b}, {0x42, 0x05, 1}} {
		if _, _, _, ok := parseHead(bad); ok {
			t.Errorf("parseHead(%x): ok", bad)
		}
	}
}
