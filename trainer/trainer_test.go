package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/trainer/collective"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newStore starts MinIO and builds a tiny espeak-ng corpus: 3 languages,
// numbers 0..3 (3 held out as unseen phrase), voices m1 f1 and the
// held-out m7, one held-out direction.
func newStore(t *testing.T) *objstore.Client {
	t.Helper()
	ctx := context.Background()
	mi := testenv.MinIOForTest(t)
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = mi.Endpoint, mi.AccessKey, mi.SecretKey, "babelfish"
	st, err := objstore.New(ctx, cfg, objstore.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	cldr, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		t.Fatal(err)
	}
	spec := dataset.DefaultSynthSpec()
	spec.Languages = []string{"de", "en", "fr"}
	spec.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers}, NumberMax: 3}
	spec.Variants, spec.UnseenVoices = []string{"m1", "f1", "m7"}, []string{"m7"}
	spec.Speeds, spec.Pitches = []int{170}, []int{50}
	spec.UnseenPhrases = []string{corpus.NumberID(3)}
	spec.UnseenPairs = [][2]string{{"fr", "de"}}
	spec.ShardBytes = 1 << 20
	if _, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{Store: st, Name: "tiny", Version: "v1", Spec: spec,
		Espeak: corpus.Espeak{Path: bin}, CLDR: cldr, Log: quiet()}); err != nil {
		t.Fatal(err)
	}
	return st
}

// tinyConfig is a model small enough for many -race steps.
func tinyConfig(job string) Config {
	c := DefaultConfig(job, "tiny", "v1")
	c.Model.Segments = 4
	c.Model.EncoderHidden = []int{24}
	c.Model.ContextHidden = 16
	c.Model.DecoderHidden = 16
	c.Model.DecoderLayers = 1
	c.Model.Units = 8
	c.Model.MaxUnits = 0
	c.Model.GriffinLimIterations = 1
	c.Adam.LR = 3e-3
	c.Adam.WarmupSteps = 3
	c.Steps = 20
	c.GlobalBatch = 8
	c.CheckpointEvery = 5
	c.BlockShards = 1
	c.LogEvery = 10
	return c
}

// joinGroups joins world ranks over loopback with a static peer list.
func joinGroups(t *testing.T, world int, gen string) []*collective.Group {
	t.Helper()
	lis := make([]net.Listener, world)
	peers := make([]string, world)
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i], peers[i] = l, l.Addr().String()
	}
	gs := make([]*collective.Group, world)
	errs := make([]error, world)
	var wg sync.WaitGroup
	for i := range world {
		wg.Go(func() {
			// A rendezvous at rank 0, as the scheduler sets it up: the ring
			// then runs over each rank's ring data path.
			cfg := collective.Config{Rank: i, WorldSize: world, Rendezvous: peers[0], Listener: lis[i], JobID: "t", Generation: gen,
				RendezvousTimeout: 20 * time.Second, OpTimeout: 60 * time.Second, Logger: quiet()}
			if world == 1 {
				cfg.Rendezvous = ""
			}
			gs[i], errs[i] = collective.Join(context.Background(), cfg)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: join: %v", i, err)
		}
	}
	return gs
}

// runRanks runs the job on world ranks at once and returns each rank's
// result and error. opts, if not nil, adjusts rank r's options.
func runRanks(t *testing.T, st *objstore.Client, cfg Config, world int, gen string, opts func(r int, o *Options, cancel context.CancelFunc)) ([]Result, []error) {
	t.Helper()
	job, err := Prepare(context.Background(), cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	gs := joinGroups(t, world, gen)
	res := make([]Result, world)
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r := range world {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := Options{Group: gs[r], Log: quiet()}
			if opts != nil {
				opts(r, &o, cancel)
			}
			res[r], errs[r] = job.Run(ctx, o)
			if errs[r] != nil {
				// A failed rank leaves at once, as its process would.
				gs[r].Close()
			}
		})
	}
	wg.Wait()
	var cw sync.WaitGroup
	for _, g := range gs {
		cw.Go(func() { g.Close() })
	}
	cw.Wait()
	return res, errs
}

func mustOK(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func relDiff(a, b float64) float64 {
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// TestTrainer shares one MinIO and corpus between the scenarios; each uses
// its own job id.
func TestTrainer(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()

	// The uninterrupted 2-rank run is the reference of the others.
	ref, errs := runRanks(t, st, tinyConfig("ref2"), 2, "1", nil)
	mustOK(t, errs)
	if len(ref[0].Losses) != 20 {
		t.Fatalf("reference ran %d steps, want 20", len(ref[0].Losses))
	}
	for i := range ref[0].Losses {
		if ref[0].Losses[i] != ref[1].Losses[i] {
			t.Fatalf("step %d: ranks disagree on the loss: %g vs %g", i+1, ref[0].Losses[i], ref[1].Losses[i])
		}
	}
	// Batches differ in target length, so compare 5-step means.
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	// Sampled positions make each step's loss an estimate; the exact
	// (every-position) run below checks that the loss falls.
	t.Logf("2 ranks, 2 sampled positions: mean loss of steps 1-5 %.4f, of steps 16-20 %.4f", mean(ref[0].Losses[:5]), mean(ref[0].Losses[15:]))

	t.Run("OneRankEqualsTwoRanks", func(t *testing.T) {
		one, errs := runRanks(t, st, tinyConfig("ref1"), 1, "1", nil)
		mustOK(t, errs)
		worst := 0.0
		for i, l := range one[0].Losses {
			worst = max(worst, relDiff(l, ref[0].Losses[i]))
		}
		t.Logf("max relative loss difference over 20 steps, 1 vs 2 ranks: %.3g", worst)
		if worst >= 1e-4 {
			t.Errorf("1 rank %v\n2 ranks %v\nmax relative difference %g: want < 1e-4", one[0].Losses, ref[0].Losses, worst)
		}
	})

	t.Run("WarpOneRankEqualsTwoRanks", func(t *testing.T) {
		// The warped input a sample trains on depends on the seed, epoch
		// and sample alone, never on the rank that reads it.
		cfg1, cfg2 := tinyConfig("warp1"), tinyConfig("warp2")
		cfg1.Warp, cfg2.Warp = 0.1, 0.1
		one, errs := runRanks(t, st, cfg1, 1, "1", nil)
		mustOK(t, errs)
		two, errs := runRanks(t, st, cfg2, 2, "1", nil)
		mustOK(t, errs)
		differs := false
		for i, l := range one[0].Losses {
			if d := relDiff(l, two[0].Losses[i]); d >= 1e-4 {
				t.Errorf("step %d: 1 rank %g, 2 ranks %g (relative difference %g)", i+1, l, two[0].Losses[i], d)
			}
			differs = differs || l != ref[0].Losses[i]
		}
		if !differs {
			t.Error("warped training gave exactly the unwarped losses: the warp was not applied")
		}
	})

	t.Run("CheckpointInterval", func(t *testing.T) {
		cfg := tinyConfig("interval")
		cfg.Steps, cfg.CheckpointEvery, cfg.CheckpointInterval = 6, 0, time.Nanosecond
		var saved []int64
		_, errs := runRanks(t, st, cfg, 1, "1", func(_ int, o *Options, _ context.CancelFunc) {
			o.OnStep = func(s StepInfo) {
				if s.Checkpoint != "" {
					saved = append(saved, s.Step)
				}
			}
		})
		mustOK(t, errs)
		if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(saved, want) {
			t.Fatalf("checkpoints at steps %v, want %v (an interval shorter than a step saves every step)", saved, want)
		}
	})

	t.Run("EveryPositionOneRankEqualsTwoRanks", func(t *testing.T) {
		// Positions 0 scores every target position (length-bucketed
		// graphs): the exact summed loss, split over ranks all the same.
		cfg1, cfg2 := tinyConfig("allpos1"), tinyConfig("allpos2")
		cfg1.Positions, cfg2.Positions = 0, 0
		one, errs := runRanks(t, st, cfg1, 1, "1", nil)
		mustOK(t, errs)
		two, errs := runRanks(t, st, cfg2, 2, "1", nil)
		mustOK(t, errs)
		first, last := mean(one[0].Losses[:5]), mean(one[0].Losses[15:])
		if !(last < first) {
			t.Errorf("mean loss did not fall over 20 steps (%.4f -> %.4f): %v", first, last, one[0].Losses)
		}
		t.Logf("every position: mean loss of steps 1-5 %.4f, of steps 16-20 %.4f", first, last)
		for i, l := range one[0].Losses {
			if d := relDiff(l, two[0].Losses[i]); d >= 1e-4 {
				t.Errorf("step %d: 1 rank %g, 2 ranks %g (relative difference %g)", i+1, l, two[0].Losses[i], d)
			}
			if i > 0 && l == one[0].Losses[0] {
				t.Errorf("step %d repeats step 1's loss %g", i+1, l)
			}
		}
	})

	t.Run("KilledRankResumesExactly", func(t *testing.T) {
		cfg := tinyConfig("kill")
		_, errs := runRanks(t, st, cfg, 2, "1", func(r int, o *Options, cancel context.CancelFunc) {
			if r == 1 {
				o.OnStep = func(s StepInfo) {
					if s.Step == 8 {
						cancel() // the rank dies between checkpoints
					}
				}
			}
		})
		for r, err := range errs {
			if err == nil {
				t.Fatalf("rank %d survived its peer's death", r)
			}
		}
		latest, err := LatestCheckpoint(ctx, st, "kill")
		if err != nil {
			t.Fatal(err)
		}
		if want := CheckpointPrefix("kill", 5); latest != want {
			t.Fatalf("latest checkpoint %s, want %s", latest, want)
		}
		// The restart leaves BlockShards to the trainer, which would mix
		// every train shard of a fresh job: a resumed one keeps its own.
		auto := cfg
		auto.BlockShards = 0
		if j, err := Prepare(ctx, auto, st); err != nil {
			t.Fatal(err)
		} else if j.Config().BlockShards == cfg.BlockShards {
			t.Fatalf("BlockShards 0 resolves to %d, the job's own: the restart would not show it is kept", cfg.BlockShards)
		}
		res, errs := runRanks(t, st, auto, 2, "2", nil)
		mustOK(t, errs)
		if res[0].ResumedFrom != latest || res[0].FirstStep != 6 {
			t.Fatalf("resumed from %q at step %d, want %s at step 6", res[0].ResumedFrom, res[0].FirstStep, latest)
		}
		for i, l := range res[0].Losses {
			if want := ref[0].Losses[5+i]; l != want {
				t.Errorf("step %d after resume: loss %.9g, uninterrupted %.9g", 6+i, l, want)
			}
		}
	})

	t.Run("GracefulStopCheckpoints", func(t *testing.T) {
		cfg := tinyConfig("stop")
		stop := make(chan struct{})
		res, errs := runRanks(t, st, cfg, 2, "1", func(r int, o *Options, _ context.CancelFunc) {
			if r == 0 { // only one rank is told; the ring agrees
				o.Stop = stop
				o.OnStep = func(s StepInfo) {
					if s.Step == 3 {
						close(stop)
					}
				}
			}
		})
		mustOK(t, errs)
		for r, rs := range res {
			if !rs.Stopped || rs.Step != 4 {
				t.Fatalf("rank %d: stopped %v at step %d, want a stop after step 4", r, rs.Stopped, rs.Step)
			}
		}
		ck, err := LoadCheckpoint(ctx, st, res[0].LastCheckpoint)
		if err != nil {
			t.Fatal(err)
		}
		if ck.State.Step != 4 || ck.Prefix != CheckpointPrefix("stop", 4) {
			t.Fatalf("checkpoint %s at step %d, want step 4", ck.Prefix, ck.State.Step)
		}
		// The stopped job goes on exactly where it left off.
		res, errs = runRanks(t, st, cfg, 2, "2", nil)
		mustOK(t, errs)
		if res[0].FirstStep != 5 || len(res[0].Losses) != 16 {
			t.Fatalf("resumed at step %d with %d steps, want 5 and 16", res[0].FirstStep, len(res[0].Losses))
		}
		for i, l := range res[0].Losses {
			if want := ref[0].Losses[4+i]; l != want {
				t.Errorf("step %d after stop: loss %.9g, uninterrupted %.9g", 5+i, l, want)
			}
		}
	})

	t.Run("BudgetEndsJob", func(t *testing.T) {
		// A budget spent at once ends the job after its first step, with a
		// checkpoint that carries the plan, so a restart does nothing.
		cfg := tinyConfig("budget")
		cfg.Budget = time.Nanosecond
		res, errs := runRanks(t, st, cfg, 2, "1", nil)
		mustOK(t, errs)
		if res[0].Step != 1 || res[0].Stopped {
			t.Fatalf("budgeted job ended at step %d (stopped %v), want step 1", res[0].Step, res[0].Stopped)
		}
		ck, err := LoadCheckpoint(ctx, st, res[0].LastCheckpoint)
		if err != nil {
			t.Fatal(err)
		}
		if ck.State.PlannedSteps != 1 || ck.State.BudgetUsed <= 0 {
			t.Fatalf("checkpoint plan %d steps, budget used %s: want 1 step and some time", ck.State.PlannedSteps, ck.State.BudgetUsed)
		}
		res, errs = runRanks(t, st, cfg, 2, "2", nil)
		mustOK(t, errs)
		if len(res[0].Losses) != 0 || res[0].Step != 1 {
			t.Fatalf("restarted budgeted job ran %d steps to step %d, want none", len(res[0].Losses), res[0].Step)
		}
	})

	t.Run("Evaluate", func(t *testing.T) { testEvaluate(t, st, CheckpointPrefix("ref2", 20)) })

	t.Run("BadConfig", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mutate func(*Config)
			world  int
			want   string
		}{
			{"unknown language", func(c *Config) { c.Model.Languages = []string{"de", "xx"} }, 1, "no language xx"},
			{"missing dataset", func(c *Config) { c.Dataset = "nope" }, 1, "Config.Dataset"},
			{"missing version", func(c *Config) { c.DatasetVersion = "v9" }, 1, "v9"},
			{"bad job id", func(c *Config) { c.JobID = "Bad/Job" }, 1, "Config.JobID"},
			{"zero steps", func(c *Config) { c.Steps = 0 }, 1, "Config.Steps"},
			{"zero batch", func(c *Config) { c.GlobalBatch = 0 }, 1, "Config.GlobalBatch"},
			{"zero segments", func(c *Config) { c.Model.Segments = 0 }, 1, "Segments"},
			{"one unit", func(c *Config) { c.Model.Units = 1 }, 1, "Units"},
			{"bad lr", func(c *Config) { c.Adam.LR = -1 }, 1, "LR"},
			{"negative warp", func(c *Config) { c.Warp = -0.1 }, 1, "Config.Warp is -0.1"},
			{"warp past its limit", func(c *Config) { c.Warp = 0.5 }, 1, "up to 0.3"},
			{"one language", func(c *Config) { c.Model.Languages = []string{"de"} }, 1, "at least 2 languages"},
			{"batch below world", func(c *Config) { c.GlobalBatch = 1 }, 2, "world size 2"},
			{"max units too small", func(c *Config) { c.Model.MaxUnits = 2 }, 1, "Config.Model.MaxUnits"},
			{"changed seed on resume", func(c *Config) { c.JobID = "ref2"; c.Seed = 7; c.Steps = 30 }, 1, "Config.Seed"},
			{"changed shape on resume", func(c *Config) { c.JobID = "ref2"; c.Model.DecoderHidden = 8; c.Steps = 30 }, 1, "Config.Model differs"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := tinyConfig("bad")
				tc.mutate(&cfg)
				err := runBad(t, st, cfg, tc.world)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v: want one that mentions %q", err, tc.want)
				}
			})
		}
	})
}

// runBad prepares and runs a job that must fail, without any step taken.
func runBad(t *testing.T, st *objstore.Client, cfg Config, world int) error {
	t.Helper()
	job, err := Prepare(context.Background(), cfg, st)
	if err != nil {
		return err
	}
	var gs []*collective.Group
	if world > 1 {
		gs = joinGroups(t, world, "bad")
	}
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r := range world {
		wg.Go(func() {
			o := Options{Log: quiet(), OnStep: func(s StepInfo) { errs[r] = fmt.Errorf("step %d ran", s.Step) }}
			if gs != nil {
				o.Group = gs[r]
				defer gs[r].Close()
			}
			if _, err := job.Run(context.Background(), o); err != nil {
				errs[r] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func TestPairSeedSpreads(t *testing.T) {
	// pairSeed must spread nearby indices and epochs over the stream space.
	seen := map[uint64]bool{}
	for e := range 3 {
		for i := range 1000 {
			s := pairSeed(e, i)
			if seen[s] {
				t.Fatalf("pairSeed(%d, %d) collides", e, i)
			}
			seen[s] = true
		}
	}
}

func TestWarpVariant(t *testing.T) {
	for _, n := range []int{1, 5} {
		counts := make([]int, n)
		for i := range 5000 {
			es := exampleSeed(1, i%3, i)
			v := warpVariant(es, n)
			if v != warpVariant(es, n) {
				t.Fatalf("warpVariant(%d, %d) is not deterministic", es, n)
			}
			counts[v]++
		}
		for v, c := range counts {
			// Uniform over n: 5000/n each, within 15%.
			if want := 5000 / n; c < want*85/100 || c > want*115/100 {
				t.Errorf("n=%d: variant %d drawn %d times, want about %d", n, v, c, want)
			}
		}
	}
}
