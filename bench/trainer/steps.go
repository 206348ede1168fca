package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/trainer"
	"babelfish.dev/babelfish/trainer/collective"
)

// stepParams configure the step-time part.
type stepParams struct {
	Steps int
	Langs string
}

// stepBench trains the default model (the accuracy recipe: global batch
// 336 samples, 2 sampled positions per target) on a small espeak-ng corpus
// in a MinIO of its own, with 1 rank and then 2 ranks (in one process,
// joined over loopback gRPC as separate pods would be), and prints the
// median step time split into data, forward, backward, all-reduce and
// optimizer, and samples/s. The forward pass is timed alone on a
// gradient-free twin graph (trainer.Options.SplitForward); backward is the
// forward+backward time less that, and the twin's pass is not counted in
// the step time.
func stepBench(ctx context.Context, sp stepParams) error {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mi, err := testenv.StartMinIO(ctx)
	if err != nil {
		return err
	}
	defer mi.Stop()
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = mi.Endpoint, mi.AccessKey, mi.SecretKey, "babelfish"
	st, err := objstore.New(ctx, cfg, objstore.WithLogger(quiet))
	if err != nil {
		return err
	}
	if err := st.EnsureBucket(ctx); err != nil {
		return err
	}
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		return err
	}
	cldr, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		return err
	}
	spec := dataset.DefaultSynthSpec()
	spec.Languages = strings.Split(sp.Langs, ",")
	spec.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers, corpus.Days}, NumberMax: 20}
	spec.Variants, spec.UnseenVoices = []string{"m1", "f1", "m3", "m7"}, []string{"m7"}
	spec.Pitches = []int{50}
	spec.ShardBytes = 4 << 20
	t0 := time.Now()
	man, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{Store: st, Name: "bench", Version: "v1", Spec: spec,
		Espeak: corpus.Espeak{Path: bin}, CLDR: cldr, Log: quiet})
	if err != nil {
		return err
	}
	fmt.Printf("step-time corpus: %d languages, %d utterances, built in %s\n", len(man.Languages), man.Utterances, time.Since(t0).Round(time.Second))

	var one float64
	for _, world := range []int{1, 2} {
		tc := trainer.DefaultConfig(fmt.Sprintf("bench-%d", world), "bench", "v1")
		tc.Steps = int64(sp.Steps)
		tc.CheckpointEvery = 0
		tc.LogEvery = tc.Steps
		job, err := trainer.Prepare(ctx, tc, st)
		if err != nil {
			return err
		}
		groups, err := joinLoopback(ctx, world, quiet)
		if err != nil {
			return err
		}
		infos := make([][]trainer.StepInfo, world)
		errs := make([]error, world)
		var wg sync.WaitGroup
		for r := range world {
			wg.Go(func() {
				o := trainer.Options{Log: quiet, SplitForward: true, OnStep: func(s trainer.StepInfo) { infos[r] = append(infos[r], s) }}
				if world > 1 {
					o.Group = groups[r]
				}
				_, errs[r] = job.Run(ctx, o)
			})
		}
		wg.Wait()
		for _, g := range groups {
			g.Close()
		}
		for r, err := range errs {
			if err != nil {
				return fmt.Errorf("%d ranks, rank %d: %w", world, r, err)
			}
		}
		// Rank 0's steps after the warm-up (the first epoch decodes audio).
		measured := infos[0][len(infos[0])/4:]
		var data, fwd, comp, ar, opt, step []float64
		samples, pairs := 0, 0
		var wall time.Duration
		for _, s := range measured {
			t := s.Time
			data = append(data, ms(t.Data))
			fwd = append(fwd, ms(t.Forward))
			comp = append(comp, ms(t.Compute))
			ar = append(ar, ms(t.AllReduce))
			opt = append(opt, ms(t.Optimizer))
			d := t.Data + t.Compute + t.AllReduce + t.Optimizer
			step = append(step, ms(d))
			wall += d
			samples += s.Samples
			pairs += s.Examples
		}
		sps := float64(samples) / wall.Seconds()
		if world == 1 {
			one = sps
		}
		fmt.Printf("bench trainer step_ranks=%d step_ms=%.0f data_ms=%.1f forward_ms=%.0f backward_ms=%.0f allreduce_ms=%.1f optimizer_ms=%.1f samples_per_s=%.0f pairs_per_s=%.0f scaling_vs_1=%.2f steps=%d global_batch=%d\n",
			world, median(step), median(data), median(fwd), median(comp)-median(fwd), median(ar), median(opt), sps,
			float64(pairs)/wall.Seconds(), sps/one, len(measured), tc.GlobalBatch)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// joinLoopback joins world ranks over loopback with a static peer list
// (none for one rank) and each rank's ring data path listed, so the ring
// runs as it does in a scheduled job.
func joinLoopback(ctx context.Context, world int, log *slog.Logger) ([]*collective.Group, error) {
	if world == 1 {
		return nil, nil
	}
	lis := make([]net.Listener, 2*world)
	addrs := make([]string, 2*world)
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lis[:i] {
				l.Close()
			}
			return nil, err
		}
		lis[i], addrs[i] = l, l.Addr().String()
	}
	peers, rings := addrs[:world], addrs[world:]
	gs := make([]*collective.Group, world)
	errs := make([]error, world)
	gen := fmt.Sprint(time.Now().UnixNano())
	var wg sync.WaitGroup
	for i := range world {
		wg.Go(func() {
			gs[i], errs[i] = collective.Join(ctx, collective.Config{Rank: i, WorldSize: world, Peers: peers, Listener: lis[i],
				RingPeers: rings, RingListener: lis[world+i],
				JobID: "bench-steps", Generation: gen, RendezvousTimeout: time.Minute, OpTimeout: 5 * time.Minute, Logger: log})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, g := range gs {
				if g != nil {
					g.Close()
				}
			}
			return nil, fmt.Errorf("rank %d: join: %w", i, err)
		}
	}
	return gs, nil
}
