package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/progress"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/units"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/trainer/collective"
)

// Job is a validated job whose dataset is open: Prepare does every check
// that needs no compute, so a bad config fails before rendezvous.
type Job struct {
	cfg     Config
	store   *objstore.Client
	version *dataset.Version
	// autoBlocks says Config.BlockShards was 0 (resolved by Prepare), so a
	// resumed job keeps the block count it started with.
	autoBlocks bool
}

// Prepare validates cfg, opens its dataset and checks the languages
// against it (an empty Config.Model.Languages takes all of the dataset's).
func Prepare(ctx context.Context, cfg Config, store *objstore.Client) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if store == nil {
		return nil, errors.New("trainer: no object store")
	}
	v, err := dataset.Open(ctx, store, cfg.Dataset, cfg.DatasetVersion)
	if err != nil {
		return nil, fmt.Errorf("trainer: Config.Dataset %s/%s: %w", cfg.Dataset, cfg.DatasetVersion, err)
	}
	if len(cfg.Model.Languages) == 0 {
		cfg.Model.Languages = v.Manifest.LanguageCodes()
	} else if err := v.CheckLanguages(cfg.Model.Languages); err != nil {
		return nil, fmt.Errorf("trainer: Config.Model.Languages: %w", err)
	}
	if len(cfg.Model.Languages) < 2 {
		return nil, fmt.Errorf("trainer: Config.Model.Languages is %v: translation needs at least 2 languages", cfg.Model.Languages)
	}
	train := 0
	for _, s := range v.Manifest.Shards {
		if s.Split == shard.SplitTrain {
			train += s.Utterances
		}
	}
	if train == 0 {
		return nil, fmt.Errorf("trainer: dataset %s/%s has no %q split to train on", cfg.Dataset, cfg.DatasetVersion, shard.SplitTrain)
	}
	auto := cfg.BlockShards == 0
	cfg.BlockShards = blockShards(v.Manifest, cfg.BlockShards)
	return &Job{cfg: cfg, store: store, version: v, autoBlocks: auto}, nil
}

// Config is the job's config, defaults and languages filled in.
func (j *Job) Config() Config { return j.cfg }

// Options are a rank's runtime parts: none of them changes the result.
type Options struct {
	// Group is this rank's collective group; nil runs a single rank.
	Group *collective.Group
	// Stop, when closed, asks for a graceful stop: every rank finishes the
	// step all of them agree on, rank 0 checkpoints, and Run returns nil
	// with Result.Stopped set.
	Stop <-chan struct{}
	// Reporter gets status reports; nil means NopReporter.
	Reporter StatusReporter
	// Metrics, if not nil, is updated every step.
	Metrics       *Metrics
	LoaderMetrics *loader.Metrics
	// Progress, if not nil, gets a progress bar over the job's steps.
	Progress io.Writer
	// DataCacheBytes bounds the shards the loader keeps in memory; 0 keeps
	// the whole train split when it is at most DefaultDataCacheBytes (so
	// epochs after the first read nothing), else the loader's default.
	DataCacheBytes int64
	// SplitForward times each step's forward pass alone (StepTime.Forward)
	// by running it once more on a gradient-free twin graph: for
	// benchmarks, it costs a forward pass per step.
	SplitForward bool
	// OnStep, if not nil, is called after every step (tests, benchmarks).
	OnStep func(StepInfo)
	Log    *slog.Logger
}

// StepInfo describes one finished step. Every rank sees the same figures.
type StepInfo struct {
	Step int64
	// Loss is the mean per-example loss; TokenAccuracy the teacher-forced
	// unit accuracy.
	Loss, TokenAccuracy float64
	Examples, Samples   int
	LR, GradNorm        float64
	Time                StepTime
	// Checkpoint is the prefix written after this step ("" when none, or
	// on ranks other than 0).
	Checkpoint string
}

// StepTime splits a step's wall time: Data (reading and features), Compute
// (forward and backward), AllReduce, Optimizer. Forward is set only under
// Options.SplitForward: the time of the same forward pass alone, on a
// twin graph without gradients, run before (and not counted in) Compute,
// so Compute - Forward estimates the backward pass.
type StepTime struct {
	Data, Compute, AllReduce, Optimizer time.Duration
	Forward                             time.Duration
}

// Result is what one Run did.
type Result struct {
	// ResumedFrom is the checkpoint restored at start ("" for a fresh job).
	ResumedFrom string
	// FirstStep is the step number of Losses[0]; Step the last step taken.
	FirstStep, Step int64
	// Losses are the mean per-example losses of the steps run now.
	Losses []float64
	// Stopped is set when a stop request ended the run early.
	Stopped bool
	// LastCheckpoint is the last checkpoint written (rank 0) or restored.
	LastCheckpoint string
}

// rankInfo wraps an optional group.
type rankInfo struct{ g *collective.Group }

func (r rankInfo) rank() int {
	if r.g == nil {
		return 0
	}
	return r.g.Rank()
}

func (r rankInfo) world() int {
	if r.g == nil {
		return 1
	}
	return r.g.WorldSize()
}

func (r rankInfo) broadcast(ctx context.Context, buf []float32) error {
	if r.g == nil || r.g.WorldSize() == 1 {
		return nil
	}
	return r.g.Broadcast(ctx, buf, 0)
}

func (r rankInfo) allReduce(ctx context.Context, bufs ...[]float32) error {
	if r.g == nil || r.g.WorldSize() == 1 {
		return nil
	}
	return r.g.AllReduceMany(ctx, bufs)
}

func (r rankInfo) barrier(ctx context.Context) error {
	if r.g == nil || r.g.WorldSize() == 1 {
		return nil
	}
	return r.g.Barrier(ctx)
}

// Indexes into the per-step statistics all-reduced with the gradients.
const (
	stLoss = iota
	stExamples
	stTokens
	stCorrect
	stSamples
	stStop
	stFailed
	stPlan        // rank 0's budget plan: the job's new step count, 0 for none
	stBudgetSpent // rank 0 found the wall-clock budget spent
	stLen
)

// Run trains this rank until Config.Steps, a stop request, a failure or
// the end of ctx (a hard stop: no checkpoint). It resumes from the job's
// latest committed checkpoint when there is one.
func (j *Job) Run(ctx context.Context, o Options) (res Result, err error) {
	cfg := j.cfg
	ri := rankInfo{o.Group}
	rank, world := ri.rank(), ri.world()
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("job", cfg.JobID, "rank", rank)
	rep := o.Reporter
	if rep == nil {
		rep = NopReporter{}
	}
	status := Status{Phase: PhaseStarting, TotalSteps: cfg.Steps}
	report := func(p Phase) {
		if rank == 0 {
			status.Phase = p
			rep.Report(ctx, status)
		}
	}
	report(PhaseStarting)
	defer func() {
		switch {
		case err != nil:
			status.Message = err.Error()
			report(PhaseFailed)
		case res.Stopped:
			report(PhaseStopped)
		default:
			report(PhaseSucceeded)
		}
	}()
	if cfg.GlobalBatch < world {
		return res, fmt.Errorf("trainer: Config.GlobalBatch is %d: want at least the world size %d (one sample per rank)", cfg.GlobalBatch, world)
	}

	runStart := time.Now()
	m, opt, resumed, err := j.restoreOrInit(ctx, ri, log, report, &res)
	if err != nil {
		return res, err
	}
	cursor, step := resumed.cursor, resumed.step
	if resumed.blockShards > 0 {
		cfg.BlockShards = resumed.blockShards
	}
	status.LatestCheckpoint = res.LastCheckpoint
	status.Step = step
	res.FirstStep, res.Step = step+1, step
	if step >= cfg.Steps || (resumed.planned > 0 && step >= resumed.planned) {
		log.Info("job already complete", "step", step, "steps", cfg.Steps, "planned_steps", resumed.planned)
		return res, nil
	}

	cacheBytes := dataCacheBytes(j.version.Manifest, o.DataCacheBytes)
	if shards, bytes := trainSplit(j.version.Manifest); o.DataCacheBytes > 0 && cfg.BlockShards >= shards && cacheBytes < bytes {
		// Every shard is mixed but not every shard fits: each step may
		// fetch shards again. The data stays the same, only slower.
		log.Warn("data cache smaller than the shards mixed: shards will be read again and again; raise --data-cache or set --block-shards",
			"data_cache_bytes", cacheBytes, "train_split_bytes", bytes, "block_shards", cfg.BlockShards)
	}
	stream, err := loader.New(ctx, j.version.Artifact, j.version.Manifest, loader.Options{
		Seed: cfg.Seed, BlockShards: cfg.BlockShards, Cursor: cursor,
		Partition: loader.Partition{Rank: rank, World: world, GlobalBatch: cfg.GlobalBatch},
		Splits:    []string{shard.SplitTrain}, Metrics: o.LoaderMetrics, Log: log,
		CacheBytes: cacheBytes,
	})
	if err != nil {
		return res, err
	}
	defer stream.Close()

	mc := m.Config()
	share := (cfg.GlobalBatch + world - 1) / world
	type graphKey struct{ rows, positions int }
	graphs := map[graphKey]*model.Graph{}
	lossGraphs := map[graphKey]*model.Graph{}
	graphFor := func(exs []model.Example, lossOnly bool) (*model.Graph, error) {
		// Rows round up to 8 so a few graphs serve every batch while
		// padding (rows of samples that yield no pair) costs little.
		k := graphKey{rows: min(share, (len(exs)+7)/8*8), positions: min(cfg.Positions, mc.MaxUnits)}
		if cfg.Positions == 0 {
			longest := 1
			for _, ex := range exs {
				longest = max(longest, len(ex.Units.Units)+1)
			}
			k.positions = min(mc.MaxUnits, (longest+7)/8*8)
		}
		gs, build := graphs, m.NewGraph
		if lossOnly {
			gs, build = lossGraphs, m.NewLossGraph
		}
		if g := gs[k]; g != nil {
			return g, nil
		}
		g, err := build(k.rows, k.positions)
		if err != nil {
			return nil, err
		}
		gs[k] = g
		return g, nil
	}
	flt := newFilters(j.version.Manifest, mc.Languages)
	cache := newFeatureCache(cfg.Warp)
	params := m.Params().Flat
	grads := make([]float32, len(params))
	stats := make([]float32, stLen)
	var bar *progress.Bar
	newBar := func(total int64) {
		if o.Progress != nil && rank == 0 {
			if bar != nil {
				bar.Done()
			}
			bar = progress.New(o.Progress, "train "+cfg.JobID, "steps", total)
			bar.Add(step)
		}
	}
	defer func() {
		if bar != nil {
			bar.Done()
		}
	}()
	// total is the step the job ends at; a budget sets it from measured
	// speed (restored from the checkpoint on resume).
	total := cfg.Steps
	bud := budgetPlan{budget: cfg.Budget, start: runStart.Add(-resumed.used), planned: resumed.planned}
	if bud.planned > 0 {
		total = min(total, bud.planned)
	}
	if cfg.Budget == 0 || bud.planned > 0 {
		newBar(total)
	}
	status.TotalSteps = total
	report(PhaseTraining)
	log.Info("training", "from_step", step, "steps", total, "budget", cfg.Budget, "world", world, "global_batch", cfg.GlobalBatch,
		"positions", cfg.Positions, "params", len(params), "units", mc.Units, "max_units", mc.MaxUnits, "languages", mc.Languages)

	winStart, winSteps, winSamples, winExamples := time.Now(), 0, 0, 0
	lastCheckpoint := time.Now() // for CheckpointInterval (rank 0)
	bud.markFrom(step)
	stopRequested := func() bool {
		select {
		case <-o.Stop:
			return true
		default:
			return false
		}
	}
	for step < total {
		var tm StepTime
		t0 := time.Now()
		b, err := stream.Next(ctx)
		if err != nil {
			return res, fmt.Errorf("trainer: step %d: reading data: %w", step+1, err)
		}
		exs, exErr := buildExamples(m, cache, flt, cfg.Seed, b)
		if exErr != nil {
			exErr = fmt.Errorf("trainer: step %d: %w", step+1, exErr)
		}
		tm.Data = time.Since(t0)
		if o.SplitForward && exErr == nil && len(exs) > 0 {
			tf := time.Now()
			g, err := graphFor(exs, true)
			if err == nil {
				_, err = g.Loss(exs)
			}
			if err != nil {
				exErr = fmt.Errorf("trainer: step %d: forward alone: %w", step+1, err)
			}
			tm.Forward = time.Since(tf)
		}
		t1 := time.Now()
		var sums model.Sums
		if exErr == nil && len(exs) > 0 {
			g, err := graphFor(exs, false)
			if err == nil {
				sums, err = g.Gradients(exs, grads)
			}
			if err != nil {
				exErr = fmt.Errorf("trainer: step %d: %w", step+1, err)
			}
		}
		if exErr != nil || len(exs) == 0 {
			clear(grads)
			sums = model.Sums{}
		}
		tm.Compute = time.Since(t1)
		clear(stats)
		stats[stLoss] = float32(sums.Loss)
		stats[stExamples] = float32(sums.Examples)
		stats[stTokens] = float32(sums.Scored)
		stats[stCorrect] = float32(sums.Correct)
		stats[stSamples] = float32(len(b.Samples))
		if stopRequested() {
			stats[stStop] = 1
		}
		if exErr != nil {
			stats[stFailed] = 1
		}
		if rank == 0 && cfg.Budget > 0 {
			// Rank 0 alone times the job; the all-reduce tells the others.
			if p, ok := bud.replan(time.Now(), step+1); ok {
				stats[stPlan] = float32(min(p, cfg.Steps))
			}
			if bud.spent(time.Now()) {
				stats[stBudgetSpent] = 1
			}
		}
		t2 := time.Now()
		// Every rank takes part even when its share failed, so the others
		// learn of it here instead of timing out.
		if err := ri.allReduce(ctx, grads, stats); err != nil {
			return res, fmt.Errorf("trainer: step %d: all-reduce: %w", step+1, err)
		}
		tm.AllReduce = time.Since(t2)
		if exErr != nil {
			return res, exErr
		}
		if stats[stFailed] > 0 {
			return res, fmt.Errorf("trainer: step %d: another rank failed its share", step+1)
		}
		if p := int64(stats[stPlan]); p > 0 {
			// The decay ends where the budget does; a plan at or before
			// this step makes it the last.
			p = max(p, step+1)
			if bud.planned == 0 {
				newBar(p)
			}
			bud.planned, total = p, p
			opt.SetDecaySteps(p)
			status.TotalSteps = p
			if rank == 0 {
				log.Info("schedule set from measured speed", "step", step+1, "steps", p, "budget_left", bud.left(time.Now()).Round(time.Second))
			}
		}
		if stats[stBudgetSpent] > 0 && total > step+1 {
			total = step + 1
			bud.planned = total
			if rank == 0 {
				log.Warn("wall-clock budget spent before the planned steps: ending now", "step", step+1, "budget", cfg.Budget)
			}
		}
		t3 := time.Now()
		examples := int(stats[stExamples])
		info := StepInfo{Step: step + 1, Examples: examples, Samples: int(stats[stSamples])}
		if examples > 0 {
			st, err := opt.Step(params, grads, 1/float64(examples))
			if err != nil {
				return res, fmt.Errorf("trainer: step %d: %w", step+1, err)
			}
			info.LR, info.GradNorm = st.LR, st.GradNorm
			info.Loss = float64(stats[stLoss]) / float64(examples)
			if tok := stats[stTokens]; tok > 0 {
				info.TokenAccuracy = float64(stats[stCorrect]) / float64(tok)
			}
		}
		// A global batch with no pair (all canonical or held out) still
		// counts as a step: the data cursor moves on, the weights do not.
		tm.Optimizer = time.Since(t3)
		info.Time = tm
		step++
		cursor = b.Cursor
		res.Step = step
		res.Losses = append(res.Losses, info.Loss)
		winSteps++
		winSamples += info.Samples
		winExamples += info.Examples
		stop := stats[stStop] > 0

		if o.Metrics != nil {
			mt := o.Metrics
			mt.Step.Set(float64(step))
			mt.TotalSteps.Set(float64(total))
			mt.Loss.Set(info.Loss)
			mt.TokenAccuracy.Set(info.TokenAccuracy)
			mt.LearningRate.Set(info.LR)
			mt.GradNorm.Set(info.GradNorm)
			mt.Samples.Add(float64(len(b.Samples)))
			mt.Examples.Add(float64(len(exs)))
			for part, d := range map[string]time.Duration{"data": tm.Data, "compute": tm.Compute, "allreduce": tm.AllReduce, "optimizer": tm.Optimizer} {
				mt.StepSeconds.WithLabelValues(part).Observe(d.Seconds())
			}
		}
		status.Step, status.Loss = step, info.Loss
		if bar != nil {
			bar.Add(1)
		}
		if step%cfg.LogEvery == 0 || step == total || stop {
			el := time.Since(winStart).Seconds()
			sps, samps, exps := float64(winSteps)/el, float64(winSamples)/el, float64(winExamples)/el
			eta := time.Duration(float64(total-step) / sps * float64(time.Second))
			status.StepsPerSecond, status.SamplesPerSecond, status.ETA = sps, samps, eta
			if o.Metrics != nil {
				o.Metrics.StepsPerSecond.Set(sps)
				o.Metrics.SamplesPerSecond.Set(samps)
				o.Metrics.ExamplesPerSecond.Set(exps)
				o.Metrics.ETASeconds.Set(eta.Seconds())
			}
			if rank == 0 {
				log.Info("train", "step", step, "of", total, "loss", round4(info.Loss), "token_acc", round4(info.TokenAccuracy), "lr", info.LR,
					"grad_norm", round4(info.GradNorm), "steps_per_s", round4(sps), "samples_per_s", round4(samps), "pairs_per_s", round4(exps),
					"eta", eta.Round(time.Second))
				rep.Report(ctx, status)
			}
			winStart, winSteps, winSamples, winExamples = time.Now(), 0, 0, 0
		}
		due := cfg.CheckpointEvery > 0 && step%cfg.CheckpointEvery == 0
		if cfg.CheckpointInterval > 0 && rank == 0 && time.Since(lastCheckpoint) >= cfg.CheckpointInterval {
			due = true
		}
		if stop || step == total || due {
			if rank == 0 {
				lastCheckpoint = time.Now()
				report(PhaseCheckpointing)
				tc := time.Now()
				st := CheckpointState{Step: step, Cursor: cursor, Loss: info.Loss, TokenAccuracy: info.TokenAccuracy,
					WorldSize: world, Config: cfg, Time: time.Now().UTC(), PlannedSteps: bud.planned}
				if cfg.Budget > 0 {
					st.BudgetUsed = time.Since(bud.start)
				}
				prefix, err := saveCheckpoint(ctx, j.store, m, opt, st)
				if err != nil {
					return res, err
				}
				info.Checkpoint, res.LastCheckpoint, status.LatestCheckpoint = prefix, prefix, prefix
				if o.Metrics != nil {
					o.Metrics.Checkpoints.Inc()
					o.Metrics.CheckpointSecs.Observe(time.Since(tc).Seconds())
				}
				log.Info("checkpoint", "step", step, "prefix", prefix, "took", time.Since(tc).Round(time.Millisecond))
				report(PhaseTraining)
			}
		}
		if o.OnStep != nil {
			o.OnStep(info)
		}
		if stop {
			res.Stopped = true
			log.Info("stopped on request", "step", step)
			break
		}
	}
	// Nobody leaves before the last checkpoint is committed.
	if err := ri.barrier(ctx); err != nil {
		return res, fmt.Errorf("trainer: final barrier: %w", err)
	}
	return res, nil
}

// restoreOrInit loads the latest checkpoint on every rank (rank 0 picks it
// and broadcasts its step, so all ranks load the same one), or learns the
// codebook on rank 0, broadcasts it and initialises the model from the seed.
func (j *Job) restoreOrInit(ctx context.Context, ri rankInfo, log *slog.Logger, report func(Phase), res *Result) (*model.Model, *model.Adam, resumePoint, error) {
	cfg := j.cfg
	var zero resumePoint
	// hdr: found, step high bits, step low bits, rank-0 error flag.
	hdr := make([]float32, 4)
	if ri.rank() == 0 {
		prefix, err := LatestCheckpoint(ctx, j.store, cfg.JobID)
		switch {
		case err == nil:
			var s int64
			if _, err := fmt.Sscanf(prefix, checkpointParent(cfg.JobID)+"%d/", &s); err != nil {
				hdr[3] = 1
			}
			hdr[0], hdr[1], hdr[2] = 1, float32(s>>20), float32(s&(1<<20-1))
		case errors.Is(err, ErrNoCheckpoint):
		default:
			hdr[3] = 1
			_ = ri.broadcast(ctx, hdr)
			return nil, nil, zero, err
		}
	}
	if err := ri.broadcast(ctx, hdr); err != nil {
		return nil, nil, zero, fmt.Errorf("trainer: agreeing on the checkpoint: %w", err)
	}
	if hdr[3] != 0 {
		return nil, nil, zero, errors.New("trainer: rank 0 could not list checkpoints")
	}
	if hdr[0] == 1 {
		step := int64(hdr[1])<<20 | int64(hdr[2])
		ck, err := LoadCheckpoint(ctx, j.store, CheckpointPrefix(cfg.JobID, step))
		if err != nil {
			return nil, nil, zero, err
		}
		if j.autoBlocks {
			cfg.BlockShards = ck.State.Config.BlockShards
		}
		if err := compatible(cfg, ck); err != nil {
			return nil, nil, zero, err
		}
		res.ResumedFrom, res.LastCheckpoint = ck.Prefix, ck.Prefix
		log.Info("resumed", "checkpoint", ck.Prefix, "step", ck.State.Step, "cursor", ck.State.Cursor, "saved_world", ck.State.WorldSize)
		return ck.Model, ck.Optimizer, resumePoint{cursor: ck.State.Cursor, step: ck.State.Step, planned: ck.State.PlannedSteps, used: ck.State.BudgetUsed, blockShards: cfg.BlockShards}, nil
	}

	mc := cfg.Model
	report(PhaseLearningUnits)
	k, dim := mc.Units, mc.NMels()
	buf := make([]float32, 2+k*dim) // ok flag, longest target, centroids
	if ri.rank() == 0 {
		t0 := time.Now()
		ud, err := learnUnits(ctx, j.version, mc, cfg.Seed, cfg.CodebookFrames)
		if err != nil {
			_ = ri.broadcast(ctx, buf)
			return nil, nil, zero, err
		}
		buf[0], buf[1] = 1, float32(ud.longest)
		copy(buf[2:], ud.codebook.Centroids)
		log.Info("units learned", "k", k, "longest_target", ud.longest, "took", time.Since(t0).Round(time.Millisecond))
	}
	if err := ri.broadcast(ctx, buf); err != nil {
		return nil, nil, zero, fmt.Errorf("trainer: broadcasting the codebook: %w", err)
	}
	if buf[0] != 1 {
		return nil, nil, zero, errors.New("trainer: rank 0 failed to learn the unit codebook")
	}
	longest := int(buf[1])
	cb := &units.Codebook{K: k, Dim: dim, Centroids: buf[2:]}
	if mc.MaxUnits == 0 {
		mc.MaxUnits = longest + 1
	} else if mc.MaxUnits < longest+1 {
		return nil, nil, zero, fmt.Errorf("trainer: Config.Model.MaxUnits is %d: the longest canonical target has %d units plus the end marker", mc.MaxUnits, longest)
	}
	m, err := model.New(mc, cb)
	if err != nil {
		return nil, nil, zero, fmt.Errorf("trainer: Config.Model: %w", err)
	}
	opt, err := model.NewAdam(cfg.Adam, m.Params().Size())
	if err != nil {
		return nil, nil, zero, fmt.Errorf("trainer: Config.Adam: %w", err)
	}
	return m, opt, zero, nil
}

// resumePoint is where a run starts: a checkpoint's data cursor, step and
// budget plan, or the zero value for a fresh job.
type resumePoint struct {
	cursor  loader.Cursor
	step    int64
	planned int64
	used    time.Duration
	// blockShards is the checkpoint's block count (0 for a fresh job).
	blockShards int
}

// compatible checks that a resumed job would continue the same sequence:
// same data, seed, global batch and model shape.
func compatible(cfg Config, ck *Checkpoint) error {
	old := ck.State.Config
	for _, f := range []struct {
		name     string
		got, was any
	}{
		{"Dataset", cfg.Dataset, old.Dataset},
		{"DatasetVersion", cfg.DatasetVersion, old.DatasetVersion},
		{"Seed", cfg.Seed, old.Seed},
		{"GlobalBatch", cfg.GlobalBatch, old.GlobalBatch},
		{"BlockShards", cfg.BlockShards, old.BlockShards},
	} {
		if f.got != f.was {
			return fmt.Errorf("trainer: Config.%s is %v but checkpoint %s was trained with %v: resume needs the same value (or a new job id)", f.name, f.got, ck.Prefix, f.was)
		}
	}
	want := cfg.Model
	have := ck.Model.Config()
	if want.MaxUnits == 0 {
		want.MaxUnits = have.MaxUnits
	}
	want.Features = want.Features.WithDefaults()
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(have)
	if string(a) != string(b) {
		return fmt.Errorf("trainer: Config.Model differs from checkpoint %s's model:\n  job:        %s\n  checkpoint: %s", ck.Prefix, a, b)
	}
	return nil
}
