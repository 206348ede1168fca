package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	collectivev1 "babelfish.dev/babelfish/api/collective/v1"
	"babelfish.dev/babelfish/internal/bufpool"
)

// Request metadata keys that identify the sender of a Ring stream.
const (
	mdJob        = "babelfish-job"
	mdGeneration = "babelfish-generation"
	mdRank       = "babelfish-rank"
)

// inboundDepth is how many received chunks may wait for the operation that
// consumes them; it lets gRPC parse the next chunks while one is reduced.
const inboundDepth = 16

// Group is one rank's membership in a gang of ranks. Its operations are
// collective: every rank must call the same operations in the same order
// with buffers of the same length. Operations on one Group run one at a
// time; concurrent calls wait their turn.
type Group struct {
	cfg         Config
	log         *slog.Logger
	rank, size  int
	left, right int

	// ctx lives until Close or the first failure; its cause says why it
	// ended.
	ctx    context.Context
	cancel context.CancelCauseFunc

	pool   *bufpool.Pool
	codec  codec
	server *grpc.Server
	addr   string // where this rank serves, as the other ranks dial it
	peers  []string
	reg    *registry // rank 0 in rendezvous mode

	// The Ring data path with large frames (h2ring.go), in rendezvous
	// mode; ringPeers[r] is "" for a rank without one.
	ringSrv   *ringServer
	ringAddr  string
	ringPeers []string

	// The stream from the left neighbour delivers into inbound once
	// attached; its reader closes inbound and inboundDone when it ends.
	attachMu    sync.Mutex
	attached    bool
	attachCh    chan struct{}
	inbound     chan *wireChunk
	inboundDone chan struct{}

	out       *ringClient
	outDone   chan struct{} // closed when the stream to the right ends
	outClose  sync.Once
	closeOnce sync.Once

	ops   chan struct{} // a semaphore of one: one operation at a time
	opSeq uint64
	cur   atomic.Pointer[ringOp] // the operation in flight, for placement

	manyMu sync.Mutex // guards stage
	stage  []float32

	mu     sync.Mutex // guards failed and closed
	failed error
	closed bool
}

// Join starts this rank's server, meets the other ranks and connects the
// ring. It returns once this rank's two ring streams are up, or fails after
// Config.RendezvousTimeout (or when ctx ends). The Group outlives ctx.
func Join(ctx context.Context, cfg Config) (_ *Group, err error) {
	if err := cfg.Validate(); err != nil {
		closeListeners(cfg)
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Group{
		cfg:         cfg,
		log:         cfg.Logger.With("rank", cfg.Rank, "world_size", cfg.WorldSize),
		rank:        cfg.Rank,
		size:        cfg.WorldSize,
		left:        (cfg.Rank + cfg.WorldSize - 1) % cfg.WorldSize,
		right:       (cfg.Rank + 1) % cfg.WorldSize,
		pool:        &bufpool.Pool{},
		codec:       newCodec(),
		attachCh:    make(chan struct{}),
		inbound:     make(chan *wireChunk, inboundDepth),
		inboundDone: make(chan struct{}),
		outDone:     make(chan struct{}),
		ops:         make(chan struct{}, 1),
	}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	if g.size == 1 {
		// Nothing to talk to; every collective is the identity.
		closeListeners(cfg)
		return g, nil
	}
	defer func() {
		if err != nil {
			g.stop()
		}
	}()
	start := time.Now()
	jctx, cancel := context.WithTimeoutCause(ctx, cfg.RendezvousTimeout,
		fmt.Errorf("exceeded the rendezvous timeout %s (%s)", cfg.RendezvousTimeout, EnvRendezvousTimeout))
	defer cancel()
	if err := g.listen(); err != nil {
		return nil, err
	}
	if g.peers, g.ringPeers, err = g.rendezvous(jctx); err != nil {
		return nil, err
	}
	if err := g.connect(jctx); err != nil {
		return nil, err
	}
	g.log.Info("collective: joined", "addr", g.addr, "ring_addr", g.ringAddr, "peers", g.peers, "ring_peers", g.ringPeers, "job", cfg.JobID,
		"generation", cfg.Generation, "elapsed", time.Since(start).Round(time.Millisecond))
	return g, nil
}

func closeListeners(cfg Config) {
	for _, l := range []net.Listener{cfg.Listener, cfg.RingListener} {
		if l != nil {
			l.Close()
		}
	}
}

// Rank is this rank, in [0, WorldSize).
func (g *Group) Rank() int { return g.rank }

// WorldSize is the number of ranks.
func (g *Group) WorldSize() int { return g.size }

// Addr is the address other ranks dial to reach this rank ("" when the
// world size is 1).
func (g *Group) Addr() string { return g.addr }

// Peers are the listen addresses of all ranks, indexed by rank (nil when
// the world size is 1).
func (g *Group) Peers() []string { return append([]string(nil), g.peers...) }

// Err is nil while the group is usable, ErrClosed after Close, and
// otherwise the failure that broke it.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return g.failed
}

// closeGrace bounds how long Close waits for the neighbours to finish.
const closeGrace = 5 * time.Second

// Close leaves the group. When no operation is in flight it leaves
// gracefully: it half-closes the stream to the right neighbour, so that
// everything sent so far is delivered, and waits (at most 5s) for the left
// neighbour to leave too, so a rank that is done never cuts off one that
// still finishes its last operation. Ranks that call Close after the same
// last operation therefore all return promptly. A rank whose left
// neighbour has left fails its next operation that needs data from it.
// With an operation in flight Close aborts it; the other ranks fail
// promptly. Close always stops the server.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		idle := false
		select {
		case g.ops <- struct{}{}:
			idle = true // and stays so: no operation starts on a closed group
		default:
		}
		g.mu.Lock()
		g.closed = true
		healthy := g.failed == nil
		g.mu.Unlock()
		g.attachMu.Lock()
		attached := g.attached
		g.attachMu.Unlock()
		if idle && healthy && attached && g.out != nil {
			timer := time.NewTimer(closeGrace)
			if err := g.out.CloseSend(); err == nil {
				for _, done := range []chan struct{}{g.outDone, g.inboundDone} {
					select {
					case <-done:
					case <-timer.C:
					}
				}
			}
			timer.Stop()
		}
		g.shutdown()
	})
	return nil
}

// stop closes the group without the graceful part of Close (a failed
// Join).
func (g *Group) stop() {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		g.shutdown()
	})
}

func (g *Group) shutdown() {
	g.cancel(ErrClosed)
	g.closeOutbound()
	if g.ringSrv != nil {
		// The cancel makes the ring stream end with Aborted and
		// ErrClosed's text, as below.
		g.ringSrv.stop(time.Second)
	}
	if g.server != nil {
		// The cancel makes the ring handler return at once with Aborted
		// and ErrClosed's text; a graceful stop delivers that status, so
		// the left neighbour learns that this rank left rather than that a
		// connection dropped. Stop cuts off whatever still runs after a
		// second.
		done := make(chan struct{})
		go func() { g.server.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			g.server.Stop()
			<-done
		}
	}
}

func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// fail breaks the group with err unless it is already broken or closed,
// and returns the error that broke it; the first failure is logged as a
// warning.
func (g *Group) fail(err error) error { return g.failWith(slog.LevelWarn, err) }

// failWith is fail, logging the first failure at level.
func (g *Group) failWith(level slog.Level, err error) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	first := g.failed == nil
	if first {
		g.failed = fmt.Errorf("collective: rank %d: group broken: %w", g.rank, err)
	}
	broken := g.failed
	g.mu.Unlock()
	if first {
		g.log.Log(context.Background(), level, "collective: group broken", "err", err)
		g.cancel(broken)
	}
	return broken
}

// closeOutbound drops the stream to the right neighbour; a send in
// progress fails at once.
func (g *Group) closeOutbound() {
	g.outClose.Do(func() {
		if g.out != nil {
			g.out.Close()
		}
	})
}

func (g *Group) windowSize() int32 {
	return int32(min(max(8*g.cfg.ChunkBytes, 1<<20), 64<<20))
}

func (g *Group) maxMsgSize() int { return g.cfg.ChunkBytes + 1024 }

// Socket buffer sizes of gRPC's reader and writer: large enough that one
// system call moves many 16 KiB HTTP/2 frames.
const sockBufSize = 512 << 10

func (g *Group) listen() (err error) {
	defer func() {
		if rl := g.cfg.RingListener; err != nil && g.ringSrv == nil && rl != nil {
			rl.Close() // Join owns it
		}
	}()
	lis := g.cfg.Listener
	if lis == nil {
		addr := g.cfg.ListenAddr
		if addr == "" {
			switch {
			case len(g.cfg.Peers) > 0:
				_, port, _ := net.SplitHostPort(g.cfg.Peers[g.rank])
				addr = net.JoinHostPort("", port)
			case g.rank == 0:
				addr = g.cfg.Rendezvous
			default:
				addr = ":0"
			}
		}
		var err error
		if lis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("collective: rank %d: listen on %s: %w", g.rank, addr, err)
		}
	}
	addr, err := g.advertise(lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	g.addr = addr
	if g.rank == 0 && len(g.cfg.Peers) == 0 {
		g.reg = newRegistry(g.cfg.JobID, g.cfg.Generation, g.size)
	}
	g.server = grpc.NewServer(
		grpc.ForceServerCodecV2(g.codec),
		experimental.BufferPool(g.pool),
		grpc.MaxRecvMsgSize(g.maxMsgSize()),
		grpc.InitialWindowSize(g.windowSize()),
		grpc.InitialConnWindowSize(2*g.windowSize()),
		grpc.ReadBufferSize(sockBufSize),
		grpc.WriteBufferSize(sockBufSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	collectivev1.RegisterCollectiveServer(g.server, &service{g: g})
	go func() {
		if err := g.server.Serve(lis); err != nil {
			g.fail(fmt.Errorf("server on %s stopped: %w", lis.Addr(), err))
		}
	}()
	static := len(g.cfg.Peers) > 0
	if rl := g.cfg.RingListener; static && len(g.cfg.RingPeers) == 0 && rl != nil {
		rl.Close()
	}
	if !static || len(g.cfg.RingPeers) > 0 {
		// With a rendezvous each rank tells where its ring data path
		// listens; a static gang lists those addresses in RingPeers.
		rl := g.cfg.RingListener
		if rl == nil {
			addr := g.cfg.RingListenAddr
			if addr == "" {
				if static {
					_, port, _ := net.SplitHostPort(g.cfg.RingPeers[g.rank])
					addr = net.JoinHostPort("", port)
				} else {
					host, _, _ := net.SplitHostPort(lis.Addr().String())
					if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
						host = ""
					}
					addr = net.JoinHostPort(host, "0")
				}
			}
			if rl, err = net.Listen("tcp", addr); err != nil {
				from := EnvRingListen
				if static && g.cfg.RingListenAddr == "" {
					from = fmt.Sprintf("the port of rank %d in %s", g.rank, EnvRingPeers)
				}
				return fmt.Errorf("collective: rank %d: listen for the ring data path on %s (%s): %w", g.rank, addr, from, err)
			}
		}
		if static {
			g.ringAddr = g.cfg.RingPeers[g.rank]
		} else {
			ahost, _, _ := net.SplitHostPort(g.addr)
			_, rport, _ := net.SplitHostPort(rl.Addr().String())
			g.ringAddr = net.JoinHostPort(ahost, rport)
		}
		g.ringSrv = newRingServer(g, rl)
	}
	return nil
}

// advertise is the address other ranks should dial to reach a listener
// bound to la.
func (g *Group) advertise(la net.Addr) (string, error) {
	switch {
	case g.cfg.AdvertiseAddr != "":
		return g.cfg.AdvertiseAddr, nil
	case len(g.cfg.Peers) > 0:
		return g.cfg.Peers[g.rank], nil
	}
	tcp, ok := la.(*net.TCPAddr)
	if !ok {
		return la.String(), nil
	}
	port := strconv.Itoa(tcp.Port)
	if g.rank == 0 {
		// Every rank reaches rank 0 at the rendezvous address already.
		if host, p, _ := net.SplitHostPort(g.cfg.Rendezvous); p == port && host != "" {
			return g.cfg.Rendezvous, nil
		}
	}
	if !tcp.IP.IsUnspecified() {
		return net.JoinHostPort(tcp.IP.String(), port), nil
	}
	// Bound to every interface: use the one that routes to rank 0. Dialing
	// UDP sends nothing; it only picks the local address.
	if c, err := net.Dial("udp", g.cfg.Rendezvous); err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		return net.JoinHostPort(ip.String(), port), nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("collective: rank %d: cannot tell other ranks where to reach %s; set %s: %w", g.rank, la, EnvAdvertise, err)
	}
	return net.JoinHostPort(host, port), nil
}

func (g *Group) dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Ring streams are never retried: a failure breaks the group.
		grpc.WithDisableRetry(),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(g.codec), grpc.MaxCallRecvMsgSize(g.maxMsgSize())),
		experimental.WithBufferPool(g.pool),
		grpc.WithInitialWindowSize(g.windowSize()),
		grpc.WithInitialConnWindowSize(2*g.windowSize()),
		grpc.WithReadBufferSize(sockBufSize),
		grpc.WithWriteBufferSize(sockBufSize),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
		// Ranks start in any order: retry a peer that is not up yet often,
		// rather than backing off for minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
}

// connect opens the stream to the right neighbour and waits for the left
// neighbour's stream to arrive.
func (g *Group) connect(ctx context.Context) error {
	addr := g.peers[g.right]
	if len(g.ringPeers) == g.size && g.ringPeers[g.right] != "" {
		addr = g.ringPeers[g.right]
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(g.ctx, func() { cancel(context.Cause(g.ctx)) })()
	out, err := dialRing(cctx, addr, mdJob, g.cfg.JobID, mdGeneration, g.cfg.Generation, mdRank, strconv.Itoa(g.rank))
	if err != nil {
		if g.ctx.Err() != nil {
			return context.Cause(g.ctx)
		}
		return fmt.Errorf("collective: rank %d: open ring stream to right neighbour (rank %d) at %s: %w", g.rank, g.right, addr, err)
	}
	g.out = out
	// When the group ends, for a failure or a Close, drop the stream: a
	// send blocked on a neighbour that stopped reading then fails at once,
	// so Config.OpTimeout bounds every operation. (Close's graceful part
	// half-closes the stream before the group's context ends.)
	context.AfterFunc(g.ctx, out.Close)
	go func() {
		defer close(g.outDone)
		// The server never sends; the stream ends with io.EOF once the
		// neighbour has read our half-close, with an error when it or the
		// connection fails.
		err := out.Err()
		if g.isClosed() {
			return
		}
		// A neighbour that closed its group on purpose (it finished, or
		// stopped after the 5 s grace of Close) answers Aborted with
		// ErrClosed's text: the group still breaks, but that ends a run and
		// is no fault worth a warning.
		level := slog.LevelWarn
		if st, ok := status.FromError(err); ok && st.Code() == codes.Aborted && st.Message() == ErrClosed.Error() {
			level = slog.LevelInfo
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the neighbour ended it")
		}
		g.failWith(level, fmt.Errorf("ring stream to right neighbour (rank %d) at %s ended: %w", g.right, addr, err))
	}()
	select {
	case <-g.attachCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("collective: rank %d: no ring stream from left neighbour (rank %d) at %s: %w", g.rank, g.left, g.peers[g.left], context.Cause(ctx))
	case <-g.ctx.Done():
		return context.Cause(g.ctx)
	}
}
