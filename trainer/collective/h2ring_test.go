package collective

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
	"babelfish.dev/babelfish/internal/bufpool"
)

// ringTestGroup is rank 1 of 2 with nothing but what its ring server
// needs; its ring server listens on loopback.
func ringTestGroup(t testing.TB, chunkBytes int) (*Group, *ringServer) {
	t.Helper()
	g := &Group{
		cfg:  Config{JobID: "job", Generation: "gen", ChunkBytes: chunkBytes},
		log:  quietLogger(),
		rank: 1, size: 2, left: 0, right: 0,
		pool:        &bufpool.Pool{},
		attachCh:    make(chan struct{}),
		inbound:     make(chan *wireChunk, inboundDepth),
		inboundDone: make(chan struct{}),
		ops:         make(chan struct{}, 1),
	}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	s := newRingServer(g, listenLoopback(t.(*testing.T)))
	t.Cleanup(func() { g.cancel(ErrClosed); s.stop(time.Second) })
	return g, s
}

// chunksFor is a stream of chunks with payloads of the given lengths in
// float32 values.
func chunksFor(lengths ...int) []*wireChunk {
	var cs []*wireChunk
	off := 0
	for i, n := range lengths {
		data, _ := encodeLE(floats(n))
		cs = append(cs, &wireChunk{op: 7, step: uint32(i), offset: uint64(off), kind: collectivev1.Kind_KIND_ALL_REDUCE, length: 1 << 20, data: data})
		off += n
	}
	return cs
}

// receiveAll reads chunks from g.inbound until it closes and checks them
// against want.
func receiveAll(t *testing.T, g *Group, want []*wireChunk) {
	t.Helper()
	for i := 0; ; i++ {
		var c *wireChunk
		var ok bool
		select {
		case c, ok = <-g.inbound:
		case <-time.After(10 * time.Second):
			t.Fatalf("chunk %d did not arrive", i)
		}
		if !ok {
			if i != len(want) {
				t.Fatalf("stream ended after %d chunks, want %d", i, len(want))
			}
			return
		}
		if i >= len(want) {
			t.Fatalf("chunk %d beyond the %d sent", i, len(want))
		}
		w := want[i]
		if c.op != w.op || c.step != w.step || c.offset != w.offset || c.kind != w.kind || c.length != w.length || c.dataLen != len(w.data) {
			t.Fatalf("chunk %d: got %s, want %s", i, describe(c), describe(w))
		}
		got := make([]float32, c.dataLen/4)
		copyLE(got, c.pieces)
		if want, _ := encodeLE(got); string(want) != string(w.data) {
			t.Fatalf("chunk %d: payload differs", i)
		}
		c.free()
	}
}

// TestRingServerTakesGRPCGoClient: grpc-go's own client, which sends 16
// KiB frames, streams to the ring data path; messages that span frames,
// small ones and empty ones all arrive intact, and the half-close ends
// the stream with an OK status.
func TestRingServerTakesGRPCGoClient(t *testing.T) {
	g, s := ringTestGroup(t, 1<<20)
	cc, err := grpc.NewClient(s.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newCodec())))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), mdJob, "job", mdGeneration, "gen", mdRank, "0")
	stream, err := cc.NewStream(ctx, &collectivev1.Collective_ServiceDesc.Streams[0], collectivev1.Collective_Ring_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	want := chunksFor(3, 100000, 0, 4096, 1, 250000)
	done := make(chan struct{})
	go func() { defer close(done); receiveAll(t, g, want) }()
	for _, c := range want {
		if err := stream.SendMsg(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := stream.RecvMsg(&collectivev1.RingAck{}); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want io.EOF (status OK)", err)
	}
}

// TestRingClientToRingServer: this package's client and server, with
// payloads over the 16 KiB a grpc-go peer would allow in one frame.
func TestRingClientToRingServer(t *testing.T) {
	g, s := ringTestGroup(t, 4<<20)
	c, err := dialRing(context.Background(), s.lis.Addr().String(), mdJob, "job", mdGeneration, "gen", mdRank, "0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := chunksFor(1<<20, 7, 0, 300000)
	done := make(chan struct{})
	go func() { defer close(done); receiveAll(t, g, want) }()
	for _, w := range want {
		if err := c.Send(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CloseSend(); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := c.Err(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want io.EOF (status OK)", err)
	}
}

// TestRingServerRefuses: the ring data path answers a stream from the
// wrong sender, a second stream, or another method with a gRPC status that
// says why, as grpc-go's server would.
func TestRingServerRefuses(t *testing.T) {
	_, s := ringTestGroup(t, 1<<20)
	addr := s.lis.Addr().String()
	ctx := context.Background()
	if _, err := dialRing(ctx, addr, mdJob, "other", mdGeneration, "gen", mdRank, "0"); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "stale or foreign") {
		t.Errorf("foreign job: %v, want FailedPrecondition naming a stale or foreign rank", err)
	}
	if _, err := dialRing(ctx, addr, mdJob, "job", mdGeneration, "gen", mdRank, "1"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("wrong rank: %v, want FailedPrecondition", err)
	}
	first, err := dialRing(ctx, addr, mdJob, "job", mdGeneration, "gen", mdRank, "0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := dialRing(ctx, addr, mdJob, "job", mdGeneration, "gen", mdRank, "0"); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second stream: %v, want AlreadyExists", err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = collectivev1.NewCollectiveClient(cc).Register(ctx, &collectivev1.RegisterRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Register on the ring data path: %v, want Unimplemented", err)
	}
}

// TestRingServerEndsStreamWhenGroupCloses: closing the group ends the
// sender's stream with Aborted and ErrClosed's text, which the sender
// logs as a neighbour leaving rather than a fault.
func TestRingServerEndsStreamWhenGroupCloses(t *testing.T) {
	g, s := ringTestGroup(t, 1<<20)
	c, err := dialRing(context.Background(), s.lis.Addr().String(), mdJob, "job", mdGeneration, "gen", mdRank, "0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g.cancel(ErrClosed)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5 s after the group closed")
	}
	if st, _ := status.FromError(c.Err()); st.Code() != codes.Aborted || st.Message() != ErrClosed.Error() {
		t.Fatalf("stream ended with %v, want Aborted %q", c.Err(), ErrClosed)
	}
}

// FuzzRingServer feeds arbitrary bytes after the HTTP/2 preface to a ring
// server connection: it must neither panic nor hang.
func FuzzRingServer(f *testing.F) {
	hdrs := encodeHeaders(":method", "POST", ":path", collectivev1.Collective_Ring_FullMethodName,
		"content-type", "application/grpc", mdJob, "job", mdGeneration, "gen", mdRank, "0")
	open := appendFrame(appendFrame(nil, frameSettings, 0, 0, nil), frameHeaders, flagEndHeaders, 1, hdrs)
	msg := append([]byte{0, 0, 0, 0, 3}, 0x08, 0x07, 0x20)
	f.Add([]byte{})
	f.Add(open)
	f.Add(appendFrame(open, frameData, flagEndStream, 1, msg))
	f.Add(appendFrame(open, frameData, flagPadded, 1, append([]byte{200}, msg...)))
	f.Add(appendFrame(open, frameData, 0, 1, []byte{1, 0, 0, 0, 1, 0}))
	f.Add(appendFrame(open, frameContinuation, flagEndHeaders, 1, hdrs))
	f.Add(appendFrame(nil, frameHeaders, flagPadded|flagPriority, 3, []byte{9}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, _ := ringTestGroup(t, 1<<16)
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			for {
				select {
				case c, ok := <-g.inbound:
					if !ok {
						return
					}
					c.free()
				case <-done:
					return
				}
			}
		}()
		go func() { defer close(done); (&ringConn{g: g, conn: server}).serve() }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_, _ = client.Write([]byte(h2Preface))
		_, _ = client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ring server still serving 5 s after the client closed")
		}
	})
}
