package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/internal/bufpool"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/model/units"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/serving"
	"babelfish.dev/babelfish/serving/batcher"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench serving:", err)
		os.Exit(1)
	}
}

type params struct {
	duration  time.Duration
	profile   string
	memprof   string
	levels    []int
	batch     batcher.Config
	rounds    int
	inSeconds float64
	maxOut    float64
	scale     int // network widths times this
	decLayers int // decoder layers; 0 keeps the default shape's
}

func run() error {
	var p params
	levels := flag.String("levels", "1,2,4,8,16,32,64", "client concurrency levels")
	flag.DurationVar(&p.duration, "duration", 5*time.Second, "measured time per level (after a warm-up request per client)")
	p.batch = serving.DefaultBatching()
	p.batch.MaxQueue = 1024 // closed-loop clients never overflow it
	flag.IntVar(&p.batch.MaxBatch, "max-batch", p.batch.MaxBatch, "MaxBatch with batching on (default: the server's)")
	flag.DurationVar(&p.batch.MaxDelay, "max-delay", p.batch.MaxDelay, "MaxDelay with batching on (default: the server's)")
	flag.IntVar(&p.batch.Instances, "instances", p.batch.Instances, "executors with batching on (default: the server's)")
	flag.IntVar(&p.batch.EagerBelow, "eager-below", p.batch.EagerBelow, "with batching on, run a partial batch at once while fewer inputs than this are running (serve --eager-below; default: the server's)")
	flag.IntVar(&p.rounds, "rounds", 5, "paired rounds at c=16 for the summary: each runs every mode once, in a rotating order")
	flag.Float64Var(&p.inSeconds, "input-seconds", 1.5, "input audio per request")
	flag.Float64Var(&p.maxOut, "max-output", 0.5, "output speech per request, seconds (the decoder's cap)")
	flag.StringVar(&p.profile, "cpuprofile", "", "write a CPU profile of the whole process (server and load generator) at c=16 to PREFIX-<vocoder>-<mode>.pprof")
	flag.StringVar(&p.memprof, "memprofile", "", "after c=16, write the process's cumulative allocation profile to PREFIX-<vocoder>-<mode>.allocs.pprof (compare modes with pprof -diff_base)")
	flag.IntVar(&p.scale, "scale", 1, "multiply the network's layer widths by this (the front end and vocoder stay): 4 makes the network, not the signal processing, most of a request")
	flag.IntVar(&p.decLayers, "decoder-layers", 0, "decoder layers (0: the default shape's)")
	vocoders := flag.String("vocoders", model.VocoderGriffinLim+","+model.VocoderLoops, "vocoders to serve with, one full run each (serve --vocoder)")
	flag.Parse()
	for _, f := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("-levels: %q is not a positive integer", f)
		}
		p.levels = append(p.levels, c)
	}
	slices.Sort(p.levels)
	p.levels = slices.Compact(p.levels)
	if p.scale < 1 || p.scale > 16 {
		return fmt.Errorf("-scale %d: want 1..16", p.scale)
	}
	if p.decLayers < 0 || p.decLayers > 16 {
		return fmt.Errorf("-decoder-layers %d: want 0..16", p.decLayers)
	}
	if p.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", p.rounds)
	}
	if !slices.Contains(p.levels, 16) {
		return fmt.Errorf("-levels must include 16: batching_gain is measured there")
	}
	ctx := context.Background()
	mi, err := testenv.StartMinIO(ctx)
	if err != nil {
		return err
	}
	defer mi.Stop()
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = mi.Endpoint, mi.AccessKey, mi.SecretKey, "bench"
	quiet := slog.New(slog.DiscardHandler)
	st, err := objstore.New(ctx, cfg, objstore.WithLogger(quiet))
	if err != nil {
		return err
	}
	if err := st.EnsureBucket(ctx); err != nil {
		return err
	}
	reg, err := registry.New(st, "bench", registry.WithLogger(quiet))
	if err != nil {
		return err
	}
	langs := []string{"de", "en", "fr"}
	m1, err := randomModel(langs, 1, p)
	if err != nil {
		return err
	}
	if _, err := promoteModel(ctx, st, reg, m1, 1); err != nil {
		return err
	}
	reqs, err := requestMix(p.inSeconds, p.maxOut, langs)
	if err != nil {
		return err
	}
	lim := serving.DefaultLimits()
	lim.MaxOutputSeconds = p.maxOut
	fmt.Printf("# cores=%d input=%.1fs (mean of %d clips, %.2f to %.2f s) output<=%.1fs levels=%v duration=%v parameters=%d\n",
		runtime.GOMAXPROCS(0), p.inSeconds, len(reqs), mixLo*p.inSeconds, mixHi*p.inSeconds, p.maxOut, p.levels, p.duration, m1.Params().Size())
	step := int64(1)
	for _, voc := range strings.Split(*vocoders, ",") {
		if err := runVocoder(ctx, st, reg, p, lim, m1, reqs, langs, strings.TrimSpace(voc), &step); err != nil {
			return fmt.Errorf("vocoder %s: %w", voc, err)
		}
	}
	return nil
}

// runVocoder measures every mode and the swap times with one vocoder and
// prints its summary line. step numbers the releases it promotes.
func runVocoder(ctx context.Context, st *objstore.Client, reg *registry.Registry, p params, lim serving.Limits, m *model.Model, reqs []*babelfishv1.TranslateRequest, langs []string, voc string, step *int64) error {
	// The model's own work per input, alone and in a batch of MaxBatch,
	// without gRPC: what batching can save per input, against which the
	// serving figures are read.
	cpu1, err := workPerInput(ctx, m, reqs, voc, 1)
	if err != nil {
		return err
	}
	cpuB, err := workPerInput(ctx, m, reqs, voc, p.batch.MaxBatch)
	if err != nil {
		return err
	}

	modes := []struct {
		name   string
		cfg    batcher.Config
		levels []int
	}{
		{"off", batcher.Config{MaxBatch: 1, MaxQueue: 1024, Instances: 1}, p.levels},
		{"batch", p.batch, p.levels},
		{"instances", batcher.Config{MaxBatch: 1, MaxQueue: 1024, Instances: runtime.GOMAXPROCS(0)}, []int{16}},
	}
	var rtf float64
	for _, mode := range modes {
		err := withServer(ctx, st, lim, mode.cfg, voc, 0, func(s *serving.Server, client babelfishv1.TranslatorClient) error {
			for _, c := range mode.levels {
				stop, err := startProfile(p.profile, p.memprof, c, voc, mode.name)
				if err != nil {
					return err
				}
				r, err := load(ctx, client, reqs, c, p.duration)
				stop()
				if err != nil {
					return err
				}
				fmt.Printf("bench serving vocoder=%s mode=%s c=%d rps=%.2f p50_ms=%.0f p99_ms=%.0f queue_ms=%.1f compute_ms=%.2f mean_batch=%.2f out_s=%.2f requests=%d\n",
					voc, mode.name, c, r.rps, ms(r.p50), ms(r.p99), ms(r.meanQueue), ms(r.meanCompute), r.meanBatch, r.meanOut, r.n)
				// Unbatched, every request computes alone: the lowest
				// level measured has the least contention from the others.
				if mode.name == "off" && rtf == 0 {
					rtf = r.meanCompute.Seconds() / p.inSeconds
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}

	// Swap: time from the current flip (Promote returning) to the server
	// answering with the new release, idle and under load at c=16.
	var swapIdle, swapLoaded time.Duration
	err = withServer(ctx, st, lim, modes[1].cfg, voc, 100*time.Millisecond, func(s *serving.Server, client babelfishv1.TranslatorClient) error {
		*step++
		m2, err := randomModel(langs, uint64(*step), p)
		if err != nil {
			return err
		}
		if swapIdle, err = swapTime(ctx, st, reg, s, m2, *step); err != nil {
			return err
		}
		lctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := load(lctx, client, reqs, 16, time.Hour)
			if lctx.Err() != nil {
				err = nil // stopped on purpose; the load, not its figures, was the point
			}
			done <- err
		}()
		time.Sleep(2 * time.Second)
		*step++
		m3, err := randomModel(langs, uint64(*step), p)
		if err != nil {
			stop()
			return err
		}
		swapLoaded, err = swapTime(ctx, st, reg, s, m3, *step)
		stop()
		if lerr := <-done; err == nil {
			err = lerr
		}
		return err
	})
	if err != nil {
		return err
	}
	gain, p99r, vsInst, err := pairedRounds(ctx, st, lim, p, modes[0].cfg, modes[1].cfg, modes[2].cfg, reqs, voc)
	if err != nil {
		return err
	}
	fmt.Printf("bench serving vocoder=%s batching_gain=%.2f p99_ratio=%.2f gain_vs_instances=%.2f rtf_batch1=%.3f swap_to_serving_s=%.2f swap_to_serving_loaded_s=%.2f poll_s=0.1 cores=%d rounds=%d cpu_ms_per_input_batch1=%.3f cpu_ms_per_input_batch%d=%.3f work_ratio=%.2f\n",
		voc, gain, p99r, vsInst, rtf, swapIdle.Seconds(), swapLoaded.Seconds(), runtime.GOMAXPROCS(0), p.rounds,
		ms(cpu1), p.batch.MaxBatch, ms(cpuB), cpuB.Seconds()/cpu1.Seconds())
	return nil
}

// pairedRounds measures c=16 with the three servers up at once, each
// round running off, batch and instances back to back in a rotating
// order, and returns the medians of the per-round ratios. Pairing keeps a
// change in the machine's speed between two modes' windows (which moved
// batching_gain by up to 0.15 between runs of the level sweep) out of the
// ratios.
func pairedRounds(ctx context.Context, st *objstore.Client, lim serving.Limits, p params, off, batch, inst batcher.Config, reqs []*babelfishv1.TranslateRequest, voc string) (gain, p99Ratio, vsInstances float64, err error) {
	names := []string{"off", "batch", "instances"}
	var gains, p99s, vsInsts []float64
	err = withServer(ctx, st, lim, off, voc, 0, func(_ *serving.Server, cOff babelfishv1.TranslatorClient) error {
		return withServer(ctx, st, lim, batch, voc, 0, func(_ *serving.Server, cBatch babelfishv1.TranslatorClient) error {
			return withServer(ctx, st, lim, inst, voc, 0, func(_ *serving.Server, cInst babelfishv1.TranslatorClient) error {
				clients := []babelfishv1.TranslatorClient{cOff, cBatch, cInst}
				for round := range p.rounds {
					res := make([]result, len(clients))
					for k := range clients {
						m := (round + k) % len(clients)
						r, err := load(ctx, clients[m], reqs, 16, p.duration)
						if err != nil {
							return fmt.Errorf("round %d, %s: %w", round, names[m], err)
						}
						res[m] = r
					}
					g, pr, vi := res[1].rps/res[0].rps, ms(res[1].p99)/ms(res[0].p99), res[1].rps/res[2].rps
					fmt.Printf("bench serving vocoder=%s round=%d c=16 off_rps=%.2f batch_rps=%.2f instances_rps=%.2f off_p99_ms=%.0f batch_p99_ms=%.0f batching_gain=%.2f gain_vs_instances=%.2f off_compute_ms=%.2f\n",
						voc, round, res[0].rps, res[1].rps, res[2].rps, ms(res[0].p99), ms(res[1].p99), g, vi, ms(res[0].meanCompute))
					gains, p99s, vsInsts = append(gains, g), append(p99s, pr), append(vsInsts, vi)
				}
				return nil
			})
		})
	})
	return median(gains), median(p99s), median(vsInsts), err
}

// workPerInput is the process CPU time per input of m.Translate on the
// request mix in batches of batch, with one caller per core for about two
// seconds: every core busy, as in the serving figures, so that idle
// threads spinning for work add nothing to either side of the ratio.
func workPerInput(ctx context.Context, m *model.Model, reqs []*babelfishv1.TranslateRequest, voc string, batch int) (time.Duration, error) {
	ins := make([]model.Input, len(reqs))
	for i, r := range reqs {
		clip, err := audio.DecodeWAV(r.GetAudio().GetWav(), audio.Limits{})
		if err != nil {
			return 0, err
		}
		ins[i] = model.Input{Audio: clip, TargetLang: r.GetTargetLanguage()}
	}
	opt := model.DecodeOptions{MaxSeconds: float64(reqs[0].GetDecode().GetMaxOutputSeconds()), Vocoder: voc}
	// One pass outside the timing: the loops vocoder renders its loops
	// on first use.
	if _, err := m.Translate(ctx, ins[:1], opt); err != nil {
		return 0, err
	}
	callers := runtime.GOMAXPROCS(0)
	counts := make([]int, callers)
	errs := make([]error, callers)
	c0, t0 := cpuTime(), time.Now()
	var wg sync.WaitGroup
	for w := range callers {
		wg.Go(func() {
			for i := w * batch; time.Since(t0) < 2*time.Second || counts[w] == 0; i = (i + batch) % len(ins) {
				b := make([]model.Input, batch)
				for k := range b {
					b[k] = ins[(i+k)%len(ins)]
				}
				if _, err := m.Translate(ctx, b, opt); err != nil {
					errs[w] = err
					return
				}
				counts[w] += batch
			}
		})
	}
	wg.Wait()
	cpu := cpuTime() - c0
	n := 0
	for w := range callers {
		if errs[w] != nil {
			return 0, errs[w]
		}
		n += counts[w]
	}
	return cpu / time.Duration(n), nil
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startProfile starts a CPU profile of level c=16 when prefix is set; the
// function it returns stops it and, when memPrefix is set, writes the
// allocation profile.
func startProfile(prefix, memPrefix string, c int, voc, mode string) (func(), error) {
	if c != 16 {
		return func() {}, nil
	}
	stopCPU := func() {}
	if prefix != "" {
		f, err := os.Create(fmt.Sprintf("%s-%s-%s.pprof", prefix, voc, mode))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
	}
	return func() {
		stopCPU()
		if memPrefix == "" {
			return
		}
		f, err := os.Create(fmt.Sprintf("%s-%s-%s.allocs.pprof", memPrefix, voc, mode))
		if err != nil {
			fmt.Fprintln(os.Stderr, "memprofile:", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "memprofile:", err)
		}
	}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// withServer serves the current release with cfg on loopback for fn.
func withServer(ctx context.Context, st *objstore.Client, lim serving.Limits, cfg batcher.Config, voc string, poll time.Duration, fn func(*serving.Server, babelfishv1.TranslatorClient) error) error {
	if poll == 0 {
		poll = time.Second
	}
	s, err := serving.New(st, "bench", serving.WithLogger(slog.New(slog.DiscardHandler)), serving.WithLimits(lim), serving.WithBatching(cfg), serving.WithPollInterval(poll), serving.WithVocoder(voc))
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, lis) }()
	defer func() { cancel(); <-done }()
	select {
	case <-s.Ready():
	case err := <-done:
		return fmt.Errorf("server stopped before ready: %v", err)
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("server not ready after 2 minutes")
	}
	// Answers land in buffers that are not zeroed first, as the server's
	// requests do.
	pool := new(bufpool.Pool)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newClientCodec(pool))),
		experimental.WithBufferPool(pool))
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(s, babelfishv1.NewTranslatorClient(conn))
}

type result struct {
	n           int
	rps         float64
	p50, p99    time.Duration
	meanBatch   float64
	meanQueue   time.Duration // in the batcher's queue
	meanCompute time.Duration // the batch's model time
	meanOut     float64       // seconds of speech per answer
}

// load runs c closed-loop clients: each sends one warm-up request, then
// requests back to back; those that finish inside the window count. Client
// i sends reqs[i], reqs[i+1], ... in turn, so batches mix inputs.
func load(ctx context.Context, client babelfishv1.TranslatorClient, reqs []*babelfishv1.TranslateRequest, c int, window time.Duration) (result, error) {
	var mu sync.Mutex
	var lats []time.Duration
	var batchSum, queueSum, computeSum, outSum float64
	var firstErr error
	var wg sync.WaitGroup
	var start time.Time
	warm := make(chan struct{})
	var warmWG sync.WaitGroup
	warmWG.Add(c)
	var end time.Time
	for i := range c {
		wg.Go(func() {
			next := i
			if _, err := client.Translate(ctx, reqs[next%len(reqs)]); err != nil && ctx.Err() == nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
			warmWG.Done()
			<-warm
			for {
				if time.Now().After(end) || ctx.Err() != nil {
					return
				}
				next++
				t0 := time.Now()
				resp, err := client.Translate(ctx, reqs[next%len(reqs)])
				t1 := time.Now()
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil && firstErr == nil {
						firstErr = err
					}
				} else if !t1.After(end) {
					lats = append(lats, t1.Sub(t0))
					batchSum += float64(resp.Timing.GetBatchSize())
					queueSum += resp.Timing.GetQueueSeconds()
					computeSum += resp.Timing.GetComputeSeconds()
					if r := resp.GetOutputSampleRate(); r > 0 {
						outSum += float64(len(resp.GetAudio().GetWav())-wavHeader) / 2 / float64(r)
					}
				}
				mu.Unlock()
			}
		})
	}
	warmWG.Wait()
	start = time.Now()
	end = start.Add(window)
	close(warm)
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	if len(lats) == 0 {
		return result{}, fmt.Errorf("c=%d: no request finished within %v; raise -duration", c, window)
	}
	slices.Sort(lats)
	el := min(time.Since(start), window)
	return result{
		n: len(lats), rps: float64(len(lats)) / el.Seconds(),
		p50: lats[len(lats)/2], p99: lats[min(len(lats)-1, int(math.Ceil(0.99*float64(len(lats))))-1)],
		meanBatch:   batchSum / float64(len(lats)),
		meanQueue:   time.Duration(queueSum / float64(len(lats)) * float64(time.Second)),
		meanCompute: time.Duration(computeSum / float64(len(lats)) * float64(time.Second)),
		meanOut:     outSum / float64(len(lats)),
	}, nil
}

func swapTime(ctx context.Context, st *objstore.Client, reg *registry.Registry, s *serving.Server, m *model.Model, step int64) (time.Duration, error) {
	rel, err := promoteModel(ctx, st, reg, m, step)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	for s.Release() != rel.Name() {
		if time.Since(t0) > 2*time.Minute {
			return 0, fmt.Errorf("%s not serving 2 minutes after promotion", rel.Name())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(t0), nil
}

// randomModel is the default model shape (its network scaled as p asks)
// with random weights.
func randomModel(langs []string, seed uint64, p params) (*model.Model, error) {
	cfg := model.DefaultConfig(langs)
	cfg.Seed = seed
	for i := range cfg.EncoderHidden {
		cfg.EncoderHidden[i] *= p.scale
	}
	cfg.ContextHidden *= p.scale
	cfg.DecoderHidden *= p.scale
	if p.decLayers > 0 {
		cfg.DecoderLayers = p.decLayers
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	for i := range cb.Centroids {
		cb.Centroids[i] = -6 + 4*rng.Float32()
	}
	m, err := model.New(cfg, cb)
	if err != nil {
		return nil, err
	}
	// Random weights end an answer after a few units, where a trained
	// model speaks a whole phrase: the session-5 checkpoint decodes 13 to
	// 24 units of 1 to 2 frames for espeak phrases of 0.8 to 1.5 s. Mute
	// the end marker and favour durations of 1 and 2 frames, so every
	// request decodes as many steps as a trained model does, up to
	// -max-output.
	ub, ok1 := m.Params().Get("dec.unit.b")
	db, ok2 := m.Params().Get("dec.dur.b")
	if !ok1 || !ok2 || len(ub.Data) != cfg.Units+1 || len(db.Data) < 2 {
		return nil, fmt.Errorf("random model: no end-marker or duration bias to set (model layout changed?)")
	}
	ub.Data[cfg.Units] = -1e4
	db.Data[0] += 50
	db.Data[1] += 50
	return m, nil
}

// promoteModel commits m as a checkpoint and promotes it, as the trainer
// and `babelfish promote` would.
func promoteModel(ctx context.Context, st *objstore.Client, reg *registry.Registry, m *model.Model, step int64) (registry.Release, error) {
	w, err := st.NewArtifact(fmt.Sprintf("checkpoints/bench/%012d/", step))
	if err != nil {
		return registry.Release{}, err
	}
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		return registry.Release{}, err
	}
	if _, err := w.Put(ctx, registry.PartModel, b.Bytes(), nil); err != nil {
		return registry.Release{}, err
	}
	if _, err := w.Commit(ctx, map[string]any{"step": step}); err != nil {
		return registry.Release{}, err
	}
	return reg.Promote(ctx, w.Prefix())
}

// clientCodec is gRPC's proto codec except that each request is
// marshalled once, into a buffer of its own size, and the bytes are sent
// again every time the same request goes out, as load generators such as
// ghz and perf_analyzer do. The bench's requests never change after they
// are built. The load generator shares the server's cores; marshalling
// 48 KiB of audio per request (and gRPC's default pool serving it from its
// 1 MiB tier, zeroed) was CPU taken from the server, more in batched modes,
// which use both cores, than unbatched.
type clientCodec struct {
	encoding.CodecV2
	sent *sync.Map // proto.Message -> []byte
}

func newClientCodec(pool *bufpool.Pool) clientCodec {
	return clientCodec{CodecV2: bufpool.Codec{Pool: pool}, sent: new(sync.Map)}
}

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := c.sent.Load(v); ok {
		// A SliceBuffer's Free does nothing: gRPC never recycles it.
		return mem.BufferSlice{mem.SliceBuffer(b.([]byte))}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	c.sent.Store(v, b)
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// wavHeader is the size of the canonical WAV header the server writes.
const wavHeader = 44

// The request mix: mixClips inputs whose lengths run evenly from mixLo to
// mixHi times -input-seconds (so their mean is -input-seconds), each with
// its own pitch and syllable rate, asking for the languages in turn.
const (
	mixClips     = 16
	mixLo, mixHi = 0.5, 1.5
)

// requestMix builds the requests the clients send.
func requestMix(meanSeconds, maxOut float64, langs []string) ([]*babelfishv1.TranslateRequest, error) {
	reqs := make([]*babelfishv1.TranslateRequest, mixClips)
	for i := range reqs {
		f := float64(i) / float64(mixClips-1)
		secs := meanSeconds * (mixLo + (mixHi-mixLo)*f)
		// Pitch and syllable rate vary with a different stride than length.
		g := float64((i*7)%mixClips) / float64(mixClips-1)
		wav, err := audio.EncodeWAV(speech(16000, secs, 90+170*g, 1+2.5*(1-g)), audio.PCM16)
		if err != nil {
			return nil, err
		}
		reqs[i] = &babelfishv1.TranslateRequest{
			Audio:          &babelfishv1.Audio{Wav: wav},
			TargetLanguage: langs[i%len(langs)],
			Decode:         &babelfishv1.DecodeOptions{MaxOutputSeconds: float32(maxOut)},
		}
	}
	return reqs, nil
}

// speech is a voiced, speech-like clip: harmonics of f0 Hz under an
// envelope of syll syllables a second.
func speech(rate int, seconds, f0, syll float64) audio.Clip {
	x := make([]float32, int(seconds*float64(rate)))
	for i := range x {
		t := float64(i) / float64(rate)
		env := math.Max(0, math.Sin(2*math.Pi*syll*t))
		x[i] = float32(0.3 * env * (math.Sin(2*math.Pi*f0*t) + 0.5*math.Sin(4*math.Pi*f0*t) + 0.2*math.Sin(6*math.Pi*f0*t)) / 1.7)
	}
	return audio.Clip{Rate: rate, Samples: x}
}
