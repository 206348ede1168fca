package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
)

// service is the Collective gRPC service of one rank.
type service struct {
	collectivev1.UnimplementedCollectiveServer
	g *Group
}

func (s *service) Register(ctx context.Context, req *collectivev1.RegisterRequest) (*collectivev1.RegisterResponse, error) {
	g := s.g
	if g.reg == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "rank %d is not the rendezvous: register with rank 0", g.rank)
	}
	if err := g.reg.register(req); err != nil {
		return nil, err
	}
	// The wait also ends when rank 0 leaves, so that its graceful stop
	// does not wait out the caller's deadline; Unavailable makes the
	// caller retry until its own rendezvous timeout.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(g.ctx, cancel)()
	peers, rings, err := g.reg.wait(wctx)
	if err != nil {
		if ctx.Err() == nil && g.ctx.Err() != nil {
			return nil, status.Errorf(codes.Unavailable, "rank 0 left the rendezvous: %v", context.Cause(g.ctx))
		}
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	}
	return &collectivev1.RegisterResponse{Peers: peers, RingPeers: rings}, nil
}

func (s *service) Ring(stream grpc.BidiStreamingServer[collectivev1.Chunk, collectivev1.RingAck]) error {
	g := s.g
	md, _ := metadata.FromIncomingContext(stream.Context())
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if err := g.acceptRing(first); err != nil {
		return err
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	close(g.attachCh)

	// RecvMsg blocks until data or the end of the stream, so it runs on its
	// own goroutine and the handler returns as soon as the group ends.
	errc := make(chan error, 1)
	go func() {
		defer close(g.inboundDone)
		defer close(g.inbound)
		errc <- g.readInbound(stream)
	}()
	select {
	case err := <-errc:
		if errors.Is(err, io.EOF) {
			// The neighbour left gracefully and everything it sent is
			// queued; an operation that needs more fails on its own.
			return nil
		}
		return status.Error(codes.Aborted, g.fail(fmt.Errorf("ring stream from left neighbour (rank %d) ended: %w", g.left, err)).Error())
	case <-g.ctx.Done():
		return status.Error(codes.Aborted, context.Cause(g.ctx).Error())
	}
}

// readInbound moves chunks from the left neighbour's stream to g.inbound.
func (g *Group) readInbound(stream grpc.ServerStream) error {
	for {
		c := new(wireChunk)
		if err := stream.RecvMsg(c); err != nil {
			return err
		}
		select {
		case g.inbound <- c:
		case <-g.ctx.Done():
			c.free()
			return context.Cause(g.ctx)
		}
	}
}

// acceptRing admits a ring stream whose request metadata md gives: only
// from the left neighbour of the same job and generation, and only once.
// The error is a gRPC status. The caller closes attachCh once the stream
// is up.
func (g *Group) acceptRing(md func(key string) string) error {
	job, gen := md(mdJob), md(mdGeneration)
	if job != g.cfg.JobID || gen != g.cfg.Generation {
		return status.Errorf(codes.FailedPrecondition,
			"rank %d runs job %q generation %q; ring stream is from job %q generation %q (a stale or foreign rank)",
			g.rank, g.cfg.JobID, g.cfg.Generation, job, gen)
	}
	if r, err := strconv.Atoi(md(mdRank)); err != nil || r != g.left {
		return status.Errorf(codes.FailedPrecondition, "rank %d takes its ring stream from rank %d only; got %s=%q",
			g.rank, g.left, mdRank, md(mdRank))
	}
	g.attachMu.Lock()
	defer g.attachMu.Unlock()
	if g.attached {
		return status.Errorf(codes.AlreadyExists, "rank %d already has a ring stream from rank %d", g.rank, g.left)
	}
	g.attached = true
	return nil
}
