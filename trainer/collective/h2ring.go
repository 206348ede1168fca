package collective

// The Ring data path over large HTTP/2 frames.
//
// grpc-go writes HTTP/2 DATA frames of 16 KiB at most, whatever the peer
// allows, and copies every byte into its write buffer and out of its read
// buffer. On a ring that moves gigabytes those copies and frames are most
// of the CPU (bench/trainer measured the same ring at 0.60 of its raw-TCP
// self over grpc-go). This file serves and calls the same gRPC method,
// Collective/Ring, with its own small HTTP/2 endpoint: it advertises frames
// of up to 16 MiB, writes each frame from the caller's buffer with one
// writev, and reads payloads straight into reference-counted buffers that
// the reduction reads in place. On the wire it is gRPC: a grpc-go client
// can stream to this server, and this client streams to grpc-go's server
// (which still serves Ring for static peer lists) in the frames that
// server allows. Register and every other method stay on grpc-go.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

const (
	h2Preface    = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2HeaderLen  = 9
	h2MinFrame   = 1 << 14 // every peer accepts frames this large
	h2MaxFrame   = 1<<24 - 1
	h2InitWindow = 65535
	h2MaxWindow  = 1<<31 - 1
	// ringStreamID is the one stream a ring connection carries.
	ringStreamID = 1
	// h2IOTimeout bounds the handshake and each control write, so a peer
	// that stops reading cannot hold a rank forever.
	h2IOTimeout = 10 * time.Second
	// h2MaxHeaderBlock bounds a header block (HEADERS plus CONTINUATION):
	// ring streams carry a few short headers.
	h2MaxHeaderBlock = 64 << 10
)

func newHeaderDecoder() *hpack.Decoder {
	d := hpack.NewDecoder(4096, nil)
	d.SetMaxStringLength(h2MaxHeaderBlock)
	return d
}

// addFragment starts or extends a header block; it fails past
// h2MaxHeaderBlock or for a CONTINUATION without a block.
func addFragment(block **headerBlock, h frameHeader, p []byte) error {
	if h.typ == frameHeaders {
		frag, err := headersFragment(h, p)
		if err != nil {
			return err
		}
		*block = &headerBlock{stream: h.stream, endStream: h.flags&flagEndStream != 0, frag: frag}
	} else {
		if *block == nil {
			return errors.New("CONTINUATION without HEADERS")
		}
		(*block).frag = append((*block).frag, p...)
	}
	if len((*block).frag) > h2MaxHeaderBlock {
		return fmt.Errorf("header block over %d bytes", h2MaxHeaderBlock)
	}
	return nil
}

// HTTP/2 frame types, flags and settings (RFC 9113).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingEnablePush        = 0x2
	settingMaxConcurrent     = 0x3
	settingInitialWindowSize = 0x4
	settingMaxFrameSize      = 0x5

	errCodeStreamClosed = 0x5
	errCodeRefused      = 0x7
	errCodeCancel       = 0x8
)

type frameHeader struct {
	length int
	typ    byte
	flags  byte
	stream uint32
}

func readFrameHeader(r io.Reader, buf *[h2HeaderLen]byte) (frameHeader, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return frameHeader{}, err
	}
	return frameHeader{
		length: int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2]),
		typ:    buf[3],
		flags:  buf[4],
		stream: binary.BigEndian.Uint32(buf[5:]) & (1<<31 - 1),
	}, nil
}

func appendFrameHeader(b []byte, length int, typ, flags byte, stream uint32) []byte {
	b = append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(b, stream)
}

func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	return append(appendFrameHeader(b, len(payload), typ, flags, stream), payload...)
}

func settingsPayload(kv ...uint32) []byte {
	b := make([]byte, 0, 3*len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(kv[i]))
		b = binary.BigEndian.AppendUint32(b, kv[i+1])
	}
	return b
}

func windowUpdate(b []byte, stream uint32, inc int) []byte {
	return appendFrame(b, frameWindowUpdate, 0, stream, binary.BigEndian.AppendUint32(nil, uint32(inc)))
}

// headerBlock collects one HEADERS frame and its CONTINUATION frames.
type headerBlock struct {
	stream    uint32
	endStream bool
	frag      []byte
}

// headersFragment strips a HEADERS frame's padding and priority fields.
func headersFragment(h frameHeader, p []byte) ([]byte, error) {
	if h.flags&flagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, errors.New("HEADERS padding longer than the frame")
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if h.flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("HEADERS priority field truncated")
		}
		p = p[5:]
	}
	return p, nil
}

// decodeHeaders decodes a header block into a map of first values; names
// are lower case on the wire.
func decodeHeaders(dec *hpack.Decoder, frag []byte) (map[string]string, error) {
	hs, err := dec.DecodeFull(frag)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(hs))
	for _, f := range hs {
		if _, ok := m[f.Name]; !ok {
			m[f.Name] = f.Value
		}
	}
	return m, nil
}

func encodeHeaders(kv ...string) []byte {
	var buf strings.Builder
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(kv); i += 2 {
		// Writes to a strings.Builder cannot fail.
		_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return []byte(buf.String())
}

// grpcStatusFrom reads a gRPC status out of trailers (or a trailers-only
// response).
func grpcStatusFrom(h map[string]string) error {
	s, ok := h["grpc-status"]
	if !ok {
		return status.Error(codes.Internal, "stream ended without grpc-status")
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		return status.Errorf(codes.Internal, "bad grpc-status %q", s)
	}
	if code == 0 {
		return nil
	}
	msg, err := url.PathUnescape(h["grpc-message"])
	if err != nil {
		msg = h["grpc-message"]
	}
	return status.Error(codes.Code(code), msg)
}

// grpcMessageEscape percent-encodes a status message as gRPC's
// grpc-message header wants it.
func grpcMessageEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func h2ErrCodeStatus(code uint32) codes.Code {
	switch code {
	case errCodeCancel:
		return codes.Canceled
	case errCodeRefused:
		return codes.Unavailable
	}
	return codes.Internal
}

// ringClient is the sending end of one Ring stream: this rank to its right
// neighbour.
type ringClient struct {
	conn net.Conn
	addr string

	wmu  sync.Mutex // serializes writes to conn
	bufs net.Buffers

	mu        sync.Mutex
	cond      *sync.Cond // windows grew, settings arrived, or the stream ended
	settled   bool       // the server's first SETTINGS arrived
	maxFrame  int        // the server's SETTINGS_MAX_FRAME_SIZE
	initWin   int64      // the server's SETTINGS_INITIAL_WINDOW_SIZE
	connWin   int64
	streamWin int64
	accepted  chan struct{} // response headers arrived
	done      chan struct{} // the stream ended; err says how
	err       error         // io.EOF for an OK status
}

// dialRing opens the Ring stream to addr with the request metadata md
// (name, value pairs) and returns once the server accepts it.
func dialRing(ctx context.Context, addr string, md ...string) (*ringClient, error) {
	d := net.Dialer{KeepAliveConfig: ringKeepAlive}
	var conn net.Conn
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		var err error
		if conn, err = d.DialContext(ctx, "tcp", addr); err == nil {
			break
		}
		// A peer in a static list may not be up yet: retry until ctx ends.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial: %w (%v)", context.Cause(ctx), err)
		case <-time.After(delay):
		}
	}
	c := &ringClient{
		conn: conn, addr: addr, maxFrame: h2MinFrame, initWin: h2InitWindow,
		connWin: h2InitWindow, streamWin: h2InitWindow,
		accepted: make(chan struct{}), done: make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	hdrs := append([]string{
		":method", "POST", ":scheme", "http", ":path", collectivev1.Collective_Ring_FullMethodName, ":authority", addr,
		"content-type", "application/grpc", "te", "trailers",
	}, md...)
	b := []byte(h2Preface)
	b = appendFrame(b, frameSettings, 0, 0, settingsPayload(
		settingEnablePush, 0, settingInitialWindowSize, h2MaxWindow, settingMaxFrameSize, h2MinFrame))
	b = appendFrame(b, frameHeaders, flagEndHeaders, ringStreamID, encodeHeaders(hdrs...))
	if err := c.write(b); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send stream headers: %w", err)
	}
	go c.read()
	stop := context.AfterFunc(ctx, func() { c.finish(status.FromContextError(context.Cause(ctx)).Err()) })
	defer stop()
	select {
	case <-c.accepted:
		return c, nil
	case <-c.done:
		c.Close()
		return nil, c.err
	}
}

// ringKeepAlive notices a peer that vanished without closing its socket.
var ringKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}

// write sends control frames, bounded by timeout so that a peer that
// stopped reading cannot hold the caller; data writes (writeData) are
// bounded by the group instead, which drops the connection when it fails.
func (c *ringClient) write(b []byte) error { return c.writeWithin(b, h2IOTimeout) }

func (c *ringClient) writeWithin(b []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
	defer c.conn.SetWriteDeadline(time.Time{})
	_, err := c.conn.Write(b)
	return err
}

// finish ends the stream with err once.
func (c *ringClient) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.err = err
	close(c.done)
	c.cond.Broadcast()
}

// Done is closed when the stream has ended; Err then says how.
func (c *ringClient) Done() <-chan struct{} { return c.done }

// Err is io.EOF when the server ended the stream with an OK status, its
// status error otherwise.
func (c *ringClient) Err() error {
	<-c.done
	return c.err
}

// Close drops the connection; a Send in progress fails.
func (c *ringClient) Close() {
	c.finish(status.Error(codes.Canceled, "ring stream closed by this rank"))
	c.conn.Close()
}

// Send writes one chunk as one gRPC message. It returns once every byte is
// with the kernel, so the chunk's buffer may change as soon as it returns.
func (c *ringClient) Send(w *wireChunk) error {
	hdr := w.appendHeader(make([]byte, grpcPrefixLen, grpcPrefixLen+64))
	size := len(hdr) - grpcPrefixLen + len(w.data)
	hdr[0] = 0
	binary.BigEndian.PutUint32(hdr[1:], uint32(size))
	segs := [2][]byte{hdr, w.data}
	off, total := 0, len(hdr)+len(w.data)
	for off < total {
		n, err := c.reserve(total - off)
		if err != nil {
			return err
		}
		if err := c.writeData(segs, off, n); err != nil {
			c.finish(status.Errorf(codes.Unavailable, "write to right neighbour: %v", err))
			return err
		}
		off += n
	}
	return nil
}

// reserve waits until flow control allows sending and takes up to want
// bytes of window; frames after the first of a message stay multiples of
// four bytes so float32 values do not straddle them.
func (c *ringClient) reserve(want int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		select {
		case <-c.done:
			return 0, c.err
		default:
		}
		if win := min(c.connWin, c.streamWin); c.settled && win > 0 {
			n := min(int64(want), win, int64(c.maxFrame))
			if n < int64(want) && n >= 4 {
				n -= n % 4
			}
			c.connWin -= n
			c.streamWin -= n
			return int(n), nil
		}
		c.cond.Wait()
	}
}

// writeData writes bytes [off, off+n) of the message made of segs as one
// DATA frame, with one system call and no copy of the payload.
func (c *ringClient) writeData(segs [2][]byte, off, n int) error {
	var fh [h2HeaderLen]byte
	appendFrameHeader(fh[:0], n, frameData, 0, ringStreamID)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bufs = append(c.bufs[:0], fh[:])
	for _, s := range segs {
		if off >= len(s) {
			off -= len(s)
			continue
		}
		k := min(len(s)-off, n)
		c.bufs = append(c.bufs, s[off:off+k])
		n -= k
		off = 0
		if n == 0 {
			break
		}
	}
	bufs := c.bufs // WriteTo consumes its receiver
	_, err := bufs.WriteTo(c.conn)
	clear(c.bufs) // drop references to the caller's memory
	return err
}

// CloseSend half-closes the stream: the server reads io.EOF after the
// last chunk.
func (c *ringClient) CloseSend() error {
	return c.writeWithin(appendFrameHeader(nil, 0, frameData, flagEndStream, ringStreamID), closeGrace)
}

// read handles every frame the server sends until the stream ends.
func (c *ringClient) read() {
	r := bufio.NewReaderSize(c.conn, 16<<10)
	dec := newHeaderDecoder()
	var hb [h2HeaderLen]byte
	var block *headerBlock
	gotHeaders := false
	for {
		h, err := readFrameHeader(r, &hb)
		if err == nil && h.length > h2MaxFrame {
			err = fmt.Errorf("frame of %d bytes over the %d advertised", h.length, h2MaxFrame)
		}
		var p []byte
		if err == nil {
			p = make([]byte, h.length)
			_, err = io.ReadFull(r, p)
		}
		if err != nil {
			c.finish(status.Errorf(codes.Unavailable, "connection to %s: %v", c.addr, err))
			return
		}
		if block != nil && h.typ != frameContinuation {
			c.finish(status.Error(codes.Internal, "header block interrupted"))
			return
		}
		switch h.typ {
		case frameSettings:
			if h.flags&flagAck != 0 {
				continue
			}
			c.applySettings(p)
			if c.write(appendFrame(nil, frameSettings, flagAck, 0, nil)) != nil {
				continue // the read fails next
			}
		case framePing:
			if h.flags&flagAck == 0 {
				_ = c.write(appendFrame(nil, framePing, flagAck, 0, p))
			}
		case frameWindowUpdate:
			if len(p) == 4 {
				inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
				c.mu.Lock()
				if h.stream == 0 {
					c.connWin += inc
				} else if h.stream == ringStreamID {
					c.streamWin += inc
				}
				c.cond.Broadcast()
				c.mu.Unlock()
			}
		case frameData:
			// The server sends no messages on Ring; return the window of
			// anything it sends anyway.
			if len(p) > 0 {
				_ = c.write(windowUpdate(windowUpdate(nil, 0, len(p)), h.stream, len(p)))
			}
			if h.stream == ringStreamID && h.flags&flagEndStream != 0 {
				c.finish(status.Error(codes.Internal, "server ended the stream without trailers"))
				return
			}
		case frameHeaders, frameContinuation:
			if err := addFragment(&block, h, p); err != nil {
				c.finish(status.Error(codes.Internal, err.Error()))
				return
			}
			if h.flags&flagEndHeaders == 0 {
				continue
			}
			b := block
			block = nil
			hs, err := decodeHeaders(dec, b.frag)
			if err != nil {
				c.finish(status.Errorf(codes.Internal, "decode headers: %v", err))
				return
			}
			if b.stream != ringStreamID {
				continue
			}
			if !gotHeaders && !b.endStream {
				gotHeaders = true
				if s := hs[":status"]; s != "200" {
					c.finish(status.Errorf(codes.Unavailable, "HTTP status %q", s))
					return
				}
				if !strings.HasPrefix(hs["content-type"], "application/grpc") {
					c.finish(status.Errorf(codes.Internal, "content-type %q", hs["content-type"]))
					return
				}
				close(c.accepted)
				continue
			}
			err = grpcStatusFrom(hs)
			if err == nil {
				err = io.EOF
			}
			c.finish(err)
			return
		case frameRSTStream:
			if h.stream == ringStreamID && len(p) == 4 {
				code := binary.BigEndian.Uint32(p)
				c.finish(status.Errorf(h2ErrCodeStatus(code), "stream reset by %s (HTTP/2 error code %d)", c.addr, code))
				return
			}
		case frameGoAway:
			if len(p) >= 8 && binary.BigEndian.Uint32(p)&(1<<31-1) < ringStreamID {
				c.finish(status.Errorf(codes.Unavailable, "%s went away before taking the stream", c.addr))
				return
			}
		}
	}
}

func (c *ringClient) applySettings(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; len(p) >= 6; p = p[6:] {
		id, v := binary.BigEndian.Uint16(p), binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingInitialWindowSize:
			c.streamWin += int64(v) - c.initWin
			c.initWin = int64(v)
		case settingMaxFrameSize:
			if v >= h2MinFrame && v <= h2MaxFrame {
				c.maxFrame = int(v)
			}
		}
	}
	c.settled = true
	c.cond.Broadcast()
}

// ringServer serves Collective/Ring on its own listener.
type ringServer struct {
	g   *Group
	lis net.Listener

	mu    sync.Mutex
	conns map[*ringConn]struct{}
	wg    sync.WaitGroup
}

func newRingServer(g *Group, lis net.Listener) *ringServer {
	s := &ringServer{g: g, lis: lis, conns: make(map[*ringConn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return s
}

func (s *ringServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.lis.Accept()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetKeepAliveConfig(ringKeepAlive)
		}
		rc := &ringConn{g: s.g, conn: conn}
		s.mu.Lock()
		s.conns[rc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			rc.serve()
			s.mu.Lock()
			delete(s.conns, rc)
			s.mu.Unlock()
		}()
	}
}

// stop closes the listener and waits for every connection to end: the
// ring stream's once its status is out (the group's context has ended
// before stop is called), and any other after grace at most.
func (s *ringServer) stop(grace time.Duration) {
	s.lis.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	s.mu.Lock()
	for rc := range s.conns {
		rc.conn.Close()
	}
	s.mu.Unlock()
	<-done
}

// ringConn is one connection to the ring server.
type ringConn struct {
	g    *Group
	conn net.Conn
	wmu  sync.Mutex

	// The ring stream, once accepted.
	stream    uint32
	ended     bool // its end (or failure) was handled
	consumed  int  // bytes not yet returned to the client's windows
	msg       msgReader
	stopped   chan struct{} // closed once afterStop's function is done
	head      [placeHead]byte
	scratch   []byte // payloads summed in by place
	afterStop func() bool
}

func (rc *ringConn) write(b []byte) error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_ = rc.conn.SetWriteDeadline(time.Now().Add(h2IOTimeout))
	_, err := rc.conn.Write(b)
	return err
}

// trailers ends stream id with a gRPC status; headersSent says whether
// response headers went out already (otherwise a trailers-only response).
func (rc *ringConn) trailers(id uint32, headersSent bool, err error) error {
	st := status.Convert(err)
	kv := []string{}
	if !headersSent {
		kv = append(kv, ":status", "200", "content-type", "application/grpc")
	}
	kv = append(kv, "grpc-status", strconv.Itoa(int(st.Code())))
	if m := st.Message(); m != "" {
		// One HEADERS frame must hold it within every peer's minimum
		// frame size.
		if len(m) > 2048 {
			m = m[:2048] + "..."
		}
		kv = append(kv, "grpc-message", grpcMessageEscape(m))
	}
	return rc.write(appendFrame(nil, frameHeaders, flagEndHeaders|flagEndStream, id, encodeHeaders(kv...)))
}

func (rc *ringConn) serve() {
	g := rc.g
	defer rc.conn.Close()
	// A connection dropped early ends its stream too, with the reason:
	// a failed write, or a protocol error when exit stays nil.
	var exit error
	defer func() {
		if exit == nil {
			exit = errors.New("HTTP/2 protocol error")
		}
		rc.endStream(fmt.Errorf("ring stream from left neighbour (rank %d) ended: %w", g.left, exit))
	}()
	r := bufio.NewReaderSize(rc.conn, 16<<10)
	_ = rc.conn.SetReadDeadline(time.Now().Add(h2IOTimeout))
	var pre [len(h2Preface)]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil || string(pre[:]) != h2Preface {
		return // not an HTTP/2 client
	}
	_ = rc.conn.SetReadDeadline(time.Time{})
	b := appendFrame(nil, frameSettings, 0, 0, settingsPayload(
		settingMaxConcurrent, 1, settingInitialWindowSize, h2MaxWindow, settingMaxFrameSize, h2MaxFrame))
	b = windowUpdate(b, 0, h2MaxWindow-h2InitWindow)
	if exit = rc.write(b); exit != nil {
		return
	}
	dec := newHeaderDecoder()
	var hb [h2HeaderLen]byte
	var block *headerBlock
	for {
		h, err := readFrameHeader(r, &hb)
		if err == nil && h.length > h2MaxFrame {
			err = fmt.Errorf("frame of %d bytes over the %d advertised", h.length, h2MaxFrame)
		}
		if err != nil {
			rc.endStream(fmt.Errorf("ring stream from left neighbour (rank %d) ended: %w", g.left, err))
			return
		}
		if h.typ == frameData && h.stream == rc.stream && rc.stream != 0 && !rc.ended {
			if err := rc.data(r, h); err != nil {
				rc.endStream(err)
				return
			}
			continue
		}
		p := make([]byte, h.length)
		if _, err := io.ReadFull(r, p); err != nil {
			rc.endStream(fmt.Errorf("ring stream from left neighbour (rank %d) ended: %w", g.left, err))
			return
		}
		if block != nil && h.typ != frameContinuation {
			return // a protocol error: drop the connection
		}
		switch h.typ {
		case frameSettings:
			if h.flags&flagAck == 0 {
				if exit = rc.write(appendFrame(nil, frameSettings, flagAck, 0, nil)); exit != nil {
					return
				}
			}
		case framePing:
			if h.flags&flagAck == 0 {
				if exit = rc.write(appendFrame(nil, framePing, flagAck, 0, p)); exit != nil {
					return
				}
			}
		case frameData:
			// Data for a stream that is not (or no longer) the ring's.
			if len(p) > 0 {
				_ = rc.write(windowUpdate(nil, 0, len(p)))
			}
			if h.stream != rc.stream || rc.stream == 0 {
				_ = rc.write(appendFrame(nil, frameRSTStream, 0, h.stream, binary.BigEndian.AppendUint32(nil, errCodeStreamClosed)))
			}
		case frameHeaders, frameContinuation:
			if addFragment(&block, h, p) != nil {
				return // a protocol error: drop the connection
			}
			if h.flags&flagEndHeaders == 0 {
				continue
			}
			hbk := block
			block = nil
			hs, err := decodeHeaders(dec, hbk.frag)
			if err != nil {
				return
			}
			if exit = rc.open(hbk, hs); exit != nil {
				return
			}
		case frameRSTStream:
			if h.stream == rc.stream && rc.stream != 0 && len(p) == 4 {
				rc.endStream(fmt.Errorf("ring stream from left neighbour (rank %d) ended: reset (HTTP/2 error code %d)", g.left, binary.BigEndian.Uint32(p)))
			}
		case frameGoAway:
			// The client leaves; its stream ends with the connection.
		}
	}
}

// open handles a request's headers: it accepts the ring stream or answers
// with a status.
func (rc *ringConn) open(b *headerBlock, hs map[string]string) error {
	g := rc.g
	if b.stream%2 == 0 || rc.stream != 0 {
		return rc.write(appendFrame(nil, frameRSTStream, 0, b.stream, binary.BigEndian.AppendUint32(nil, errCodeRefused)))
	}
	var err error
	switch {
	case hs[":method"] != "POST" || hs[":path"] != collectivev1.Collective_Ring_FullMethodName:
		err = status.Errorf(codes.Unimplemented, "this endpoint serves only %s; call %s %s on the rank's gRPC address",
			collectivev1.Collective_Ring_FullMethodName, hs[":method"], hs[":path"])
	case !strings.HasPrefix(hs["content-type"], "application/grpc"):
		err = status.Errorf(codes.InvalidArgument, "content-type %q is not gRPC", hs["content-type"])
	case hs["grpc-encoding"] != "" && hs["grpc-encoding"] != "identity":
		err = status.Errorf(codes.Unimplemented, "grpc-encoding %q: ring chunks are sent uncompressed", hs["grpc-encoding"])
	default:
		err = g.acceptRing(func(k string) string { return hs[k] })
	}
	if err != nil {
		return rc.trailers(b.stream, false, err)
	}
	rc.stream = b.stream
	rc.msg = msgReader{max: g.maxMsgSize(), pool: g.pool}
	if err := rc.write(appendFrame(nil, frameHeaders, flagEndHeaders, b.stream,
		encodeHeaders(":status", "200", "content-type", "application/grpc"))); err != nil {
		return err
	}
	close(g.attachCh)
	// When the group ends, tell the neighbour why and stop reading.
	rc.stopped = make(chan struct{})
	rc.afterStop = context.AfterFunc(g.ctx, func() {
		defer close(rc.stopped)
		_ = rc.trailers(rc.stream, true, status.Error(codes.Aborted, context.Cause(g.ctx).Error()))
		if tc, ok := rc.conn.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		_ = rc.conn.SetReadDeadline(time.Now().Add(time.Second))
	})
	if b.endStream {
		rc.endStream(io.EOF)
	}
	return nil
}

// data reads a DATA frame of the ring stream into a pooled buffer and
// delivers the chunks it completes.
func (rc *ringConn) data(r io.Reader, h frameHeader) error {
	g := rc.g
	left := fmt.Sprintf("ring stream from left neighbour (rank %d)", g.left)
	var head []byte
	if h.flags&flagPadded == 0 && rc.msg.idle() {
		c, hd, err := rc.place(r, h)
		if err != nil {
			return fmt.Errorf("%s ended: %w", left, err)
		}
		if c != nil {
			rc.consumed += h.length
			select {
			case g.inbound <- c:
			case <-g.ctx.Done():
				return context.Cause(g.ctx)
			}
			return rc.afterData(h, left)
		}
		head = hd
	}
	var buf mem.Buffer = mem.SliceBuffer(nil)
	if h.length > 0 {
		p := g.pool.Get(h.length)
		copy(*p, head)
		if _, err := io.ReadFull(r, (*p)[len(head):]); err != nil {
			g.pool.Put(p)
			return fmt.Errorf("%s ended: %w", left, err)
		}
		buf = mem.NewBuffer(p, g.pool)
		rc.consumed += h.length
	}
	if h.flags&flagPadded != 0 {
		d := buf.ReadOnlyData()
		if len(d) < 1 || int(d[0]) > len(d)-1 {
			buf.Free()
			return fmt.Errorf("%s: DATA padding longer than the frame", left)
		}
		trimmed := buf.Slice(1, len(d)-int(d[0]))
		buf.Free()
		buf = trimmed
	}
	err := rc.msg.feed(buf, func(msg mem.BufferSlice) error {
		c := new(wireChunk)
		if err := c.parse(msg); err != nil {
			msg.Free()
			return err
		}
		c.msg = msg
		select {
		case g.inbound <- c:
			return nil
		case <-g.ctx.Done():
			c.free()
			return context.Cause(g.ctx)
		}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", left, err)
	}
	return rc.afterData(h, left)
}

// placeHead is how much of a frame place reads to find the payload: gRPC's
// prefix and every Chunk field before the payload fit with room to spare.
const placeHead = 96

// place applies a DATA frame that holds one whole chunk message, payload
// last, to the buffer of the operation in flight when the chunk is one of
// its receives that may be applied now: a copy (all-gather, broadcast) is
// read straight into place, a sum (reduce-scatter) is read into a scratch
// buffer that stays in cache and summed in at once. The payload then never
// waits in a pooled buffer for the operation's goroutine. Otherwise place
// returns the bytes it read, for the general path.
func (rc *ringConn) place(r io.Reader, h frameHeader) (*wireChunk, []byte, error) {
	op := rc.g.cur.Load()
	if op == nil || h.length <= grpcPrefixLen {
		return nil, nil, nil
	}
	head := rc.head[:min(h.length, placeHead)]
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, err
	}
	if head[0] != 0 || int(binary.BigEndian.Uint32(head[1:])) != h.length-grpcPrefixLen {
		return nil, head, nil
	}
	w, off, n, ok := parseHead(head[grpcPrefixLen:])
	off += grpcPrefixLen
	if !ok || n == 0 || off+n != h.length {
		return nil, head, nil
	}
	dst, add, ok := op.place(&w, n)
	if !ok {
		return nil, head, nil
	}
	defer op.placeMu.Unlock()
	if add {
		// Sum from a scratch buffer that stays in cache frame after frame.
		if cap(rc.scratch) < n {
			rc.scratch = make([]byte, n)
		}
		b := rc.scratch[:n]
		k := copy(b, head[off:])
		if _, err := io.ReadFull(r, b[k:]); err != nil {
			return nil, nil, err
		}
		addLE(dst, [][]byte{b})
	} else {
		b := asBytes(dst)
		k := copy(b, head[off:])
		if _, err := io.ReadFull(r, b[k:]); err != nil {
			return nil, nil, err
		}
	}
	w.placed, w.dataLen = true, n
	return &w, nil, nil
}

// afterData returns window to the client and handles the end of the
// stream after a DATA frame.
func (rc *ringConn) afterData(h frameHeader, left string) error {
	// Return the bytes to the client's windows in large steps.
	if rc.consumed >= h2MaxWindow/4 {
		b := windowUpdate(windowUpdate(nil, 0, rc.consumed), rc.stream, rc.consumed)
		rc.consumed = 0
		if err := rc.write(b); err != nil {
			return fmt.Errorf("%s ended: %w", left, err)
		}
	}
	if h.flags&flagEndStream != 0 {
		if !rc.msg.idle() {
			return fmt.Errorf("%s ended inside a message", left)
		}
		rc.endStream(io.EOF)
	}
	return nil
}

// endStream handles the end of the ring stream once: io.EOF is the
// neighbour's graceful half-close (answered with an OK status), anything
// else breaks the group unless the group has ended already.
func (rc *ringConn) endStream(err error) {
	if rc.stream == 0 || rc.ended {
		return
	}
	rc.ended = true
	g := rc.g
	rc.msg.reset()
	if rc.afterStop != nil && !rc.afterStop() {
		// The group ended: its status is on the way; let it out before the
		// connection closes.
		select {
		case <-rc.stopped:
		case <-time.After(h2IOTimeout):
		}
	} else if errors.Is(err, io.EOF) {
		_ = rc.trailers(rc.stream, true, nil)
	} else if err != nil {
		broken := g.fail(err)
		_ = rc.trailers(rc.stream, true, status.Error(codes.Aborted, broken.Error()))
	}
	close(g.inbound)
	close(g.inboundDone)
}

// msgReader splits a stream of DATA payloads into gRPC messages without
// copying them: a message is a slice of views into the frames' buffers.
type msgReader struct {
	max  int
	pool mem.BufferPool

	prefix  [grpcPrefixLen]byte
	nprefix int
	need    int
	parts   mem.BufferSlice
}

func (m *msgReader) idle() bool { return m.nprefix == 0 && len(m.parts) == 0 }

func (m *msgReader) reset() {
	m.parts.Free()
	m.parts, m.nprefix, m.need = nil, 0, 0
}

// feed takes buf (one reference) and calls deliver with each message it
// completes; deliver owns the message.
func (m *msgReader) feed(buf mem.Buffer, deliver func(mem.BufferSlice) error) error {
	defer buf.Free()
	d := buf.ReadOnlyData()
	for off := 0; off < len(d); {
		if m.nprefix < grpcPrefixLen {
			k := copy(m.prefix[m.nprefix:], d[off:])
			m.nprefix += k
			off += k
			if m.nprefix < grpcPrefixLen {
				break
			}
			if m.prefix[0] != 0 {
				return errors.New("compressed chunk: ring chunks are sent uncompressed")
			}
			m.need = int(binary.BigEndian.Uint32(m.prefix[1:]))
			if m.need > m.max {
				return fmt.Errorf("chunk message of %d bytes over the limit %d: do all ranks set the same chunk size (Config.ChunkBytes)?", m.need, m.max)
			}
		}
		k := min(m.need, len(d)-off)
		if k > 0 {
			m.parts = append(m.parts, buf.Slice(off, off+k))
			m.need -= k
			off += k
		}
		if m.need == 0 {
			msg := m.parts
			m.parts, m.nprefix = nil, 0
			if err := deliver(msg); err != nil {
				return err
			}
		}
	}
	return nil
}
