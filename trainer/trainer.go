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
	return &Job{cfg: cfg, store: store, version: v}, nil
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

// StepTime splits a step's wall time.
type StepTime struct {
	Data, Compute, AllReduce, Optimizer time.Duration
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

	m, opt, cursor, step, err := j.restoreOrInit(ctx, ri, log, report, &res)
	if err != nil {
		return res, err
	}
	status.LatestCheckpoint = res.LastCheckpoint
	status.Step = step
	res.FirstStep, res.Step = step+1, step
	if step >= cfg.Steps {
		log.Info("job already complete", "step", step, "steps", cfg.Steps)
		return res, nil
	}

	stream, err := loader.New(ctx, j.version.Artifact, j.version.Manifest, loader.Options{
		Seed: cfg.Seed, BlockShards: cfg.BlockShards, Cursor: cursor,
		Partition: loader.Partition{Rank: rank, World: world, GlobalBatch: cfg.GlobalBatch},
		Splits:    []string{shard.SplitTrain}, Metrics: o.LoaderMetrics, Log: log,
	})
	if err != nil {
		return res, err
	}
	defer stream.Close()

	mc := m.Config()
	share := (cfg.GlobalBatch + world - 1) / world
	graphs := map[int]*model.Graph{}
	graphFor := func(exs []model.Example) (*model.Graph, error) {
		longest := 1
		for _, ex := range exs {
			longest = max(longest, len(ex.Units.Units)+1)
		}
		// Round up so a few graphs serve every batch.
		l := min(mc.MaxUnits, (longest+7)/8*8)
		if g := graphs[l]; g != nil {
			return g, nil
		}
		g, err := m.NewGraph(share, l)
		if err != nil {
			return nil, err
		}
		graphs[l] = g
		return g, nil
	}
	flt := newFilters(j.version.Manifest, mc.Languages)
	cache := newFeatureCache()
	params := m.Params().Flat
	grads := make([]float32, len(params))
	stats := make([]float32, stLen)
	var bar *progress.Bar
	if o.Progress != nil && rank == 0 {
		bar = progress.New(o.Progress, "train "+cfg.JobID, "steps", cfg.Steps)
		bar.Add(step)
		defer bar.Done()
	}
	report(PhaseTraining)
	log.Info("training", "from_step", step, "steps", cfg.Steps, "world", world, "global_batch", cfg.GlobalBatch,
		"params", len(params), "units", mc.Units, "max_units", mc.MaxUnits, "languages", mc.Languages)

	winStart, winSteps, winSamples := time.Now(), 0, 0
	stopRequested := func() bool {
		select {
		case <-o.Stop:
			return true
		default:
			return false
		}
	}
	for step < cfg.Steps {
		var tm StepTime
		t0 := time.Now()
		b, err := stream.Next(ctx)
		if err != nil {
			return res, fmt.Errorf("trainer: step %d: reading data: %w", step+1, err)
		}
		var exs []model.Example
		var exErr error
		for _, s := range b.Samples {
			tgt, ok := flt.drawTarget(cfg.Seed, b.Start.Epoch, s)
			if !ok {
				continue
			}
			ex, err := cache.example(m, s, tgt)
			if err != nil {
				exErr = fmt.Errorf("trainer: step %d: %w", step+1, err)
				break
			}
			exs = append(exs, ex)
		}
		tm.Data = time.Since(t0)
		t1 := time.Now()
		var sums model.Sums
		if exErr == nil && len(exs) > 0 {
			g, err := graphFor(exs)
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
		stats[stLoss] = float32(sums.Loss)
		stats[stExamples] = float32(sums.Examples)
		stats[stTokens] = float32(sums.Tokens)
		stats[stCorrect] = float32(sums.Correct)
		stats[stSamples] = float32(len(b.Samples))
		stats[stStop] = 0
		if stopRequested() {
			stats[stStop] = 1
		}
		stats[stFailed] = 0
		if exErr != nil {
			stats[stFailed] = 1
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
		stop := stats[stStop] > 0

		if o.Metrics != nil {
			mt := o.Metrics
			mt.Step.Set(float64(step))
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
		if step%cfg.LogEvery == 0 || step == cfg.Steps || stop {
			el := time.Since(winStart).Seconds()
			sps, samps := float64(winSteps)/el, float64(winSamples)/el
			eta := time.Duration(float64(cfg.Steps-step) / sps * float64(time.Second))
			status.StepsPerSecond, status.SamplesPerSecond, status.ETA = sps, samps, eta
			if o.Metrics != nil {
				o.Metrics.StepsPerSecond.Set(sps)
				o.Metrics.SamplesPerSecond.Set(samps)
				o.Metrics.ETASeconds.Set(eta.Seconds())
			}
			if rank == 0 {
				log.Info("train", "step", step, "loss", info.Loss, "token_acc", info.TokenAccuracy, "lr", info.LR,
					"grad_norm", info.GradNorm, "steps_per_s", sps, "samples_per_s", samps, "eta", eta.Round(time.Second))
				rep.Report(ctx, status)
			}
			winStart, winSteps, winSamples = time.Now(), 0, 0
		}
		if stop || step == cfg.Steps || (cfg.CheckpointEvery > 0 && step%cfg.CheckpointEvery == 0) {
			if rank == 0 {
				report(PhaseCheckpointing)
				tc := time.Now()
				st := CheckpointState{Step: step, Cursor: cursor, Loss: info.Loss, TokenAccuracy: info.TokenAccuracy,
					WorldSize: world, Config: cfg, Time: time.Now().UTC()}
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
func (j *Job) restoreOrInit(ctx context.Context, ri rankInfo, log *slog.Logger, report func(Phase), res *Result) (*model.Model, *model.Adam, loader.Cursor, int64, error) {
	cfg := j.cfg
	var zero loader.Cursor
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
			return nil, nil, zero, 0, err
		}
	}
	if err := ri.broadcast(ctx, hdr); err != nil {
		return nil, nil, zero, 0, fmt.Errorf("trainer: agreeing on the checkpoint: %w", err)
	}
	if hdr[3] != 0 {
		return nil, nil, zero, 0, errors.New("trainer: rank 0 could not list checkpoints")
	}
	if hdr[0] == 1 {
		step := int64(hdr[1])<<20 | int64(hdr[2])
		ck, err := LoadCheckpoint(ctx, j.store, CheckpointPrefix(cfg.JobID, step))
		if err != nil {
			return nil, nil, zero, 0, err
		}
		if err := compatible(cfg, ck); err != nil {
			return nil, nil, zero, 0, err
		}
		res.ResumedFrom, res.LastCheckpoint = ck.Prefix, ck.Prefix
		log.Info("resumed", "checkpoint", ck.Prefix, "step", ck.State.Step, "cursor", ck.State.Cursor, "saved_world", ck.State.WorldSize)
		return ck.Model, ck.Optimizer, ck.State.Cursor, ck.State.Step, nil
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
			return nil, nil, zero, 0, err
		}
		buf[0], buf[1] = 1, float32(ud.longest)
		copy(buf[2:], ud.codebook.Centroids)
		log.Info("units learned", "k", k, "longest_target", ud.longest, "took", time.Since(t0).Round(time.Millisecond))
	}
	if err := ri.broadcast(ctx, buf); err != nil {
		return nil, nil, zero, 0, fmt.Errorf("trainer: broadcasting the codebook: %w", err)
	}
	if buf[0] != 1 {
		return nil, nil, zero, 0, errors.New("trainer: rank 0 failed to learn the unit codebook")
	}
	longest := int(buf[1])
	cb := &units.Codebook{K: k, Dim: dim, Centroids: buf[2:]}
	if mc.MaxUnits == 0 {
		mc.MaxUnits = longest + 1
	} else if mc.MaxUnits < longest+1 {
		return nil, nil, zero, 0, fmt.Errorf("trainer: Config.Model.MaxUnits is %d: the longest canonical target has %d units plus the end marker", mc.MaxUnits, longest)
	}
	m, err := model.New(mc, cb)
	if err != nil {
		return nil, nil, zero, 0, fmt.Errorf("trainer: Config.Model: %w", err)
	}
	opt, err := model.NewAdam(cfg.Adam, m.Params().Size())
	if err != nil {
		return nil, nil, zero, 0, fmt.Errorf("trainer: Config.Adam: %w", err)
	}
	return m, opt, zero, 0, nil
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
