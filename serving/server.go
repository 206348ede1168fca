package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/internal/bufpool"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/objstore"
)

// ServiceName is the Translator's gRPC service name, as health reports it.
const ServiceName = "babelfish.v1.Translator"

// Server serves the Translator API from a model's current release.
type Server struct {
	babelfishv1.UnimplementedTranslatorServer

	opt     options
	reg     *registry.Registry
	log     *slog.Logger
	met     *metrics
	health  *health.Server
	grpc    *grpc.Server
	cur     atomic.Pointer[engine]
	ready   chan struct{}
	readyMu sync.Once
	drains  sync.WaitGroup // old engines draining
	served  atomic.Bool

	onReject func(time.Duration) // tests: server time of each shed request
}

// New returns a Server for modelName's releases in store. It does not
// contact the store; Serve does.
func New(store *objstore.Client, modelName string, opts ...Option) (*Server, error) {
	o := options{log: slog.Default(), limits: DefaultLimits(), batching: DefaultBatching(), poll: 2 * time.Second, drainTimeout: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	if err := o.limits.Validate(); err != nil {
		return nil, err
	}
	if err := model.CheckVocoder(o.vocoder); err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	if err := o.batching.Validate(); err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	if o.poll <= 0 {
		return nil, fmt.Errorf("serving: poll interval %v: want > 0", o.poll)
	}
	if o.pin < 0 {
		return nil, fmt.Errorf("serving: release %d: want >= 1 (or 0 to follow current)", o.pin)
	}
	for i, t := range o.tokens {
		if len(t) < 16 {
			return nil, fmt.Errorf("serving: auth token %d has %d characters: want at least 16", i, len(t))
		}
	}
	reg, err := registry.New(store, modelName, registry.WithLogger(o.log))
	if err != nil {
		return nil, err
	}
	s := &Server{opt: o, reg: reg, log: o.log.With("model", modelName), ready: make(chan struct{}), health: health.NewServer()}
	s.met = newMetrics(func() float64 {
		if e := s.cur.Load(); e != nil {
			return float64(e.b.Queued())
		}
		return 0
	})
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)

	pool := new(bufpool.Pool)
	gopts := []grpc.ServerOption{
		// Our own MaxBytes check names the limit; gRPC's would not.
		grpc.MaxRecvMsgSize(int(o.limits.MaxBytes) + 64<<10),
		grpc.MaxSendMsgSize(64 << 20),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
		// Receive buffers at every power of two and not zeroed: gRPC's
		// default jumps from 32 KiB to 1 MiB (a whole MiB for a request of
		// a few seconds of audio) and clears each buffer it hands out.
		experimental.BufferPool(pool),
		// A request in several frames is gathered into a buffer of its
		// own size from the same pool, not a cleared 1 MiB one.
		grpc.ForceServerCodecV2(bufpool.Codec{Pool: pool}),
	}
	if o.tls != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(o.tls)))
	}
	s.grpc = grpc.NewServer(gopts...)
	babelfishv1.RegisterTranslatorServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// Ready is closed once the first release is warm and serving.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Release is the name of the release serving new requests ("" before the
// first), e.g. "s2ut/releases/7".
func (s *Server) Release() string {
	if e := s.cur.Load(); e != nil {
		return e.name
	}
	return ""
}

// MetricsHandler serves the Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler { return s.met.handler() }

// Serve answers gRPC on lis and follows the model's releases until ctx
// ends, then stops taking calls, lets in-flight ones finish (up to the
// drain timeout) and returns. A Server serves once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("serving: Serve called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.follow(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	s.log.Info("serving", "addr", lis.Addr().String(), "tls", s.opt.tls != nil, "auth", len(s.opt.tokens) > 0)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.opt.drainTimeout):
		s.log.Warn("in-flight calls outlived the drain timeout; stopping", "timeout", s.opt.drainTimeout)
		s.grpc.Stop()
		<-stopped
	}
	wg.Wait()
	if e := s.cur.Swap(nil); e != nil {
		s.drain(e)
	}
	s.drains.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// follow loads releases as current moves (or the pinned one) until ctx
// ends. A release that fails to load is logged and retried with backoff;
// the serving release stays.
func (s *Server) follow(ctx context.Context) {
	if s.opt.pin > 0 {
		for backoff := 100 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, 30*time.Second) {
			if err := s.load(ctx, s.opt.pin); err == nil {
				return
			}
			sleep(ctx, backoff)
		}
		return
	}
	var want, failed int64
	backoff := s.opt.poll
	for ctx.Err() == nil {
		c, err := s.reg.Current(ctx)
		switch {
		case errors.Is(err, registry.ErrNoCurrent):
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("reading current release", "err", err)
			}
		default:
			want = c.Release
		}
		if e := s.cur.Load(); want > 0 && (e == nil || e.rel.Number != want) {
			if err := s.load(ctx, want); err != nil {
				if failed == want {
					backoff = min(2*backoff, 30*time.Second)
				} else {
					failed, backoff = want, s.opt.poll
				}
				sleep(ctx, backoff)
				continue
			}
			failed, backoff = 0, s.opt.poll
		}
		sleep(ctx, s.opt.poll)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// load reads, verifies and warms up release n, then swaps it in and
// drains the old release in the background.
func (s *Server) load(ctx context.Context, n int64) error {
	t0 := time.Now()
	log := s.log.With("release", registry.ReleaseName(s.reg.Model(), n))
	fail := func(err error) error {
		s.met.swaps.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			log.Error("release not loaded; the serving release stays", "err", err)
		}
		return err
	}
	rel, err := s.reg.Get(ctx, n)
	if err != nil {
		return fail(err)
	}
	m, err := s.reg.Load(ctx, rel) // checks sha256 against record and manifest
	if err != nil {
		return fail(err)
	}
	e, err := newEngine(rel, m, s.opt.batching, s.met)
	if err != nil {
		return fail(err)
	}
	if err := e.warmUp(ctx, s.opt.batching.MaxBatch, model.DecodeOptions{MaxSeconds: s.opt.limits.MaxOutputSeconds, Vocoder: s.opt.vocoder}); err != nil {
		_ = e.b.Drain(context.Background())
		return fail(err)
	}
	old := s.cur.Swap(e)
	took := time.Since(t0)
	s.met.swaps.WithLabelValues("swapped").Inc()
	s.met.swapSecs.Observe(took.Seconds())
	s.met.release.WithLabelValues(e.name).Set(1)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.readyMu.Do(func() { close(s.ready) })
	args := []any{"took", took.Round(time.Millisecond), "languages", e.langs}
	if old != nil {
		args = append(args, "previous", old.name)
		s.met.release.WithLabelValues(old.name).Set(0)
		s.drains.Go(func() { s.drain(old) })
	}
	log.Info("release serving", args...)
	return nil
}

func (s *Server) drain(e *engine) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.drainTimeout)
	defer cancel()
	if err := e.b.Drain(ctx); err != nil {
		s.log.Warn("old release did not drain in time", "release", e.name, "err", err)
		return
	}
	s.log.Info("old release drained", "release", e.name)
}
