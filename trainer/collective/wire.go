package collective

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas/blas32"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

// Field numbers of collectivev1.Chunk, which wireChunk encodes by hand.
const (
	fieldOp     = 1
	fieldStep   = 2
	fieldOffset = 3
	fieldData   = 4
	fieldKind   = 5
	fieldLength = 6
	fieldRoot   = 7
	fieldPad    = 8
)

// grpcPrefixLen is the length of gRPC's message prefix (flag and length),
// which precedes the message in the first HTTP/2 frame.
const grpcPrefixLen = 5

// wireChunk is the in-memory form of a collectivev1.Chunk on the hot path.
// Its encoding is exactly the protobuf encoding of Chunk (data last), so
// any gRPC client or server using the generated types can speak to a rank;
// the hand-written codec only avoids copying the payload.
type wireChunk struct {
	op     uint64
	step   uint32
	offset uint64
	kind   collectivev1.Kind
	length uint64
	root   uint32

	// Sending: the payload (the ring client writes it before Send
	// returns, so it may alias the caller's buffer).
	data []byte

	// Receiving: the message as gRPC delivered it (one reference held) and
	// the payload as views into it.
	msg     mem.BufferSlice
	pieces  [][]byte
	dataLen int
	// placed: the payload is in the operation's buffer already (the ring
	// data path read it there); pieces is empty.
	placed bool
}

// free drops the reference a received chunk holds on gRPC's buffers.
func (c *wireChunk) free() {
	if c.msg != nil {
		c.msg.Free()
		c.msg = nil
		c.pieces = nil
	}
}

// release fires once a send has finished reading its part of the caller's
// buffer, which may then change again.
type release struct {
	once sync.Once
	done chan struct{}
}

func newRelease() *release { return &release{done: make(chan struct{})} }

func (r *release) fire() { r.once.Do(func() { close(r.done) }) }

// codec is gRPC's proto codec that also encodes and decodes *wireChunk
// without copying the payload. It keeps the name "proto" so the content
// type on the wire is unchanged. grpc-go's server decodes ring chunks with
// it (static peer lists); a grpc-go client can send them with it.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec { return codec{proto: encoding.GetCodecV2(grpcproto.Name)} }

func (c codec) Name() string { return grpcproto.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wireChunk)
	if !ok {
		return c.proto.Marshal(v)
	}
	hdr := w.appendHeader(make([]byte, 0, 64))
	if len(w.data) == 0 {
		return mem.BufferSlice{mem.SliceBuffer(hdr)}, nil
	}
	// The caller keeps the payload unchanged until gRPC has sent it.
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.SliceBuffer(w.data[:len(w.data):len(w.data)])}, nil
}

// appendHeader appends the encoding of every field but the payload's bytes
// (which follow it on the wire): the whole message when there is no
// payload.
func (w *wireChunk) appendHeader(hdr []byte) []byte {
	hdr = appendVarintField(hdr, fieldOp, w.op)
	hdr = appendVarintField(hdr, fieldStep, uint64(w.step))
	hdr = appendVarintField(hdr, fieldOffset, w.offset)
	hdr = appendVarintField(hdr, fieldKind, uint64(w.kind))
	hdr = appendVarintField(hdr, fieldLength, w.length)
	hdr = appendVarintField(hdr, fieldRoot, uint64(w.root))
	if len(w.data) == 0 {
		return hdr
	}
	// Pad so that the payload starts at a multiple of 4 bytes from the start
	// of the message's first frame (after gRPC's 5-byte prefix); frames are
	// multiples of 4 bytes, so every frame then holds whole float32 values
	// (see addLE).
	dataHdr := protowire.SizeTag(fieldData) + protowire.SizeVarint(uint64(len(w.data)))
	pad := mod(-(grpcPrefixLen + len(hdr) + dataHdr + protowire.SizeTag(fieldPad) + 1), 4)
	hdr = protowire.AppendTag(hdr, fieldPad, protowire.BytesType)
	hdr = protowire.AppendBytes(hdr, make([]byte, pad))
	hdr = protowire.AppendTag(hdr, fieldData, protowire.BytesType)
	return protowire.AppendVarint(hdr, uint64(len(w.data)))
}

func appendVarintField(b []byte, field protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wireChunk)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	*w = wireChunk{}
	if err := w.parse(data); err != nil {
		return err
	}
	// gRPC frees data after Unmarshal returns; the chunk keeps it until the
	// payload has been reduced.
	data.Ref()
	w.msg = data
	return nil
}

// setVarint stores a varint field; unknown fields are ignored.
func (w *wireChunk) setVarint(num protowire.Number, v uint64) {
	switch num {
	case fieldOp:
		w.op = v
	case fieldStep:
		w.step = uint32(v)
	case fieldOffset:
		w.offset = v
	case fieldKind:
		w.kind = collectivev1.Kind(int32(v))
	case fieldLength:
		w.length = v
	case fieldRoot:
		w.root = uint32(v)
	}
}

// parse decodes a Chunk spread over the buffers of data without copying the
// payload. Fields may come in any order; unknown fields are skipped; a
// repeated data field replaces the earlier one, as protobuf says.
func (w *wireChunk) parse(data mem.BufferSlice) error {
	cur := cursor{bufs: data}
	for !cur.eof() {
		tag, err := cur.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num <= 0 {
			return fmt.Errorf("collective: chunk: bad field number %d", num)
		}
		switch typ {
		case protowire.VarintType:
			v, err := cur.varint()
			if err != nil {
				return err
			}
			w.setVarint(num, v)
		case protowire.BytesType:
			n, err := cur.varint()
			if err != nil {
				return err
			}
			if n > uint64(cur.remaining()) {
				return fmt.Errorf("collective: chunk: field %d claims %d bytes, %d left", num, n, cur.remaining())
			}
			if num == fieldData {
				w.pieces = cur.views(int(n), w.pieces[:0])
				w.dataLen = int(n)
			} else {
				cur.skip(int(n))
			}
		case protowire.Fixed32Type:
			if cur.remaining() < 4 {
				return fmt.Errorf("collective: chunk: truncated field %d", num)
			}
			cur.skip(4)
		case protowire.Fixed64Type:
			if cur.remaining() < 8 {
				return fmt.Errorf("collective: chunk: truncated field %d", num)
			}
			cur.skip(8)
		default:
			return fmt.Errorf("collective: chunk: field %d has unsupported wire type %d", num, typ)
		}
	}
	return nil
}

// cursor reads across the buffers of a mem.BufferSlice.
type cursor struct {
	bufs mem.BufferSlice
	i    int // current buffer
	off  int // offset in it
}

func (c *cursor) normalize() {
	for c.i < len(c.bufs) && c.off >= c.bufs[c.i].Len() {
		c.i++
		c.off = 0
	}
}

func (c *cursor) eof() bool {
	c.normalize()
	return c.i >= len(c.bufs)
}

func (c *cursor) remaining() int {
	n := 0
	for j := c.i; j < len(c.bufs); j++ {
		n += c.bufs[j].Len()
	}
	return n - c.off
}

func (c *cursor) varint() (uint64, error) {
	c.normalize()
	if c.i >= len(c.bufs) {
		return 0, fmt.Errorf("collective: chunk: truncated varint")
	}
	b := c.bufs[c.i].ReadOnlyData()[c.off:]
	if v, n := protowire.ConsumeVarint(b); n > 0 {
		c.off += n
		return v, nil
	}
	// The varint crosses a buffer boundary: gather at most 10 bytes.
	var tmp [binary.MaxVarintLen64]byte
	k := 0
	for j, off := c.i, c.off; j < len(c.bufs) && k < len(tmp); j, off = j+1, 0 {
		k += copy(tmp[k:], c.bufs[j].ReadOnlyData()[off:])
	}
	v, n := protowire.ConsumeVarint(tmp[:k])
	if n < 0 {
		return 0, fmt.Errorf("collective: chunk: bad varint: %w", protowire.ParseError(n))
	}
	c.skip(n)
	return v, nil
}

func (c *cursor) skip(n int) {
	for n > 0 {
		c.normalize()
		k := min(n, c.bufs[c.i].Len()-c.off)
		c.off += k
		n -= k
	}
}

// views appends the next n bytes as sub-slices of the buffers.
func (c *cursor) views(n int, dst [][]byte) [][]byte {
	for n > 0 {
		c.normalize()
		b := c.bufs[c.i].ReadOnlyData()[c.off:]
		k := min(n, len(b))
		dst = append(dst, b[:k])
		c.off += k
		n -= k
	}
	return dst
}

// littleEndian reports whether float32 memory is already in wire order.
func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// asBytes views f as its in-memory bytes (wire order on little-endian
// hosts).
func asBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

// encodeLE returns f as little-endian bytes: a view of f on little-endian
// hosts (zero-copy, aliased is true) or a fresh copy elsewhere.
func encodeLE(f []float32) (b []byte, aliased bool) {
	if littleEndian() {
		return asBytes(f), true
	}
	b = make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b, false
}

// addLE adds the little-endian float32 values in pieces to dst, in order.
// A value may straddle two pieces. Whole aligned runs are summed as float32
// slices with gonum's vectorized kernel; the rest value by value. Either
// way each element gets the same single IEEE addition, so the result does
// not depend on the path. The caller checks the total length.
func addLE(dst []float32, pieces [][]byte) {
	var carry [4]byte
	nc, i := 0, 0
	for _, p := range pieces {
		if nc > 0 {
			k := copy(carry[nc:], p)
			nc += k
			p = p[k:]
			if nc < 4 {
				continue
			}
			dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(carry[:]))
			i++
			nc = 0
		}
		m := len(p) / 4
		d := dst[i : i+m]
		if src, ok := floatView(p[:4*m]); ok {
			blas32.Axpy(1, blas32.Vector{N: m, Inc: 1, Data: src}, blas32.Vector{N: m, Inc: 1, Data: d})
		} else {
			for j := range d {
				d[j] += math.Float32frombits(binary.LittleEndian.Uint32(p[4*j:]))
			}
		}
		i += m
		nc = copy(carry[:], p[4*m:])
	}
}

// floatView views b as float32 values when that is what the bytes mean
// (little-endian host) and the memory is aligned for it.
func floatView(b []byte) ([]float32, bool) {
	if len(b) == 0 || !littleEndian() || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4), true
}

// copyLE stores the little-endian float32 values in pieces into dst.
func copyLE(dst []float32, pieces [][]byte) {
	if littleEndian() {
		b := asBytes(dst)
		for _, p := range pieces {
			b = b[copy(b, p):]
		}
		return
	}
	var carry [4]byte
	nc, i := 0, 0
	for _, p := range pieces {
		if nc > 0 {
			k := copy(carry[nc:], p)
			nc += k
			p = p[k:]
			if nc < 4 {
				continue
			}
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(carry[:]))
			i++
			nc = 0
		}
		m := len(p) / 4
		d := dst[i : i+m]
		for j := range d {
			d[j] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*j:]))
		}
		i += m
		nc = copy(carry[:], p[4*m:])
	}
}

// parseHead decodes the fields of a Chunk that precede its payload, from
// the first bytes of the message, and says where the payload starts and
// how long it is. ok is false when b ends before the payload starts, the
// message has no payload, or anything in b is malformed.
func parseHead(b []byte) (w wireChunk, dataOff, dataLen int, ok bool) {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 || num <= 0 {
			return w, 0, 0, false
		}
		off += n
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b[off:])
			if n < 0 {
				return w, 0, 0, false
			}
			off += n
			w.setVarint(num, v)
		case protowire.BytesType:
			l, n := protowire.ConsumeVarint(b[off:])
			if n < 0 || l > 1<<31 {
				return w, 0, 0, false
			}
			off += n
			if num == fieldData {
				return w, off, int(l), true
			}
			if uint64(len(b)-off) < l {
				return w, 0, 0, false
			}
			off += int(l)
		default:
			return w, 0, 0, false
		}
	}
	return w, 0, 0, false
}
