package trainer

import (
	"errors"
	"fmt"
	"time"

	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/model"
)

// Config is one training job: everything that defines its result. Ranks of
// one job must share it; a resumed job must keep its data-defining fields
// (dataset, seed, global batch, block shards) and model shape.
type Config struct {
	// JobID names the job; checkpoints go to checkpoints/<JobID>/.
	JobID string `json:"job_id"`
	// Dataset and DatasetVersion name the training data.
	Dataset        string `json:"dataset"`
	DatasetVersion string `json:"dataset_version"`
	// Model is the model's shape. Empty Languages means every language of
	// the dataset; MaxUnits 0 means the longest canonical target plus one.
	Model model.Config `json:"model"`
	// Adam is the optimizer and learning-rate schedule; DecaySteps 0 means
	// Steps.
	Adam model.AdamConfig `json:"adam"`
	// Steps is the number of optimizer steps of the whole job.
	Steps int64 `json:"steps"`
	// GlobalBatch is the number of samples all ranks read per step. Only
	// non-canonical, seen-voice samples yield a translation pair, so a
	// step trains on fewer examples than this (about 3/4 of it on the
	// default synthetic corpus).
	GlobalBatch int `json:"global_batch"`
	// Positions is how many target positions (end marker included) each
	// example has scored per step, drawn from the example's seed and
	// weighted so the loss stays an unbiased estimate of the full sum; 0
	// scores every position. A position costs only the decoder's layers
	// (the encoder runs once per example), so 6 cost about 1.35 times 2 per
	// step while tripling what the decoder learns from; on the synthetic
	// corpus 2 left the decoder underfitted (bench/RESULTS.md).
	Positions int `json:"positions"`
	// Budget, when positive, bounds the job's wall-clock time (counted
	// across resumes, unit learning included): rank 0 measures the step
	// rate as it goes, sets the step count (at most Steps) and the end of
	// the cosine decay from it, and the job ends with a checkpoint when
	// the budget is spent. Steps then is only an upper bound, and the
	// schedule depends on the machine's speed.
	Budget time.Duration `json:"budget,omitempty"`
	// Seed drives the data order, pair drawing and k-means.
	Seed uint64 `json:"seed"`
	// BlockShards is how many shards the loader mixes (see loader.Order).
	// 0 mixes every shard of the train split when the split is at most
	// DefaultDataCacheBytes (the trainer then holds it in memory anyway),
	// else DefaultBlockShards. Datasets are sharded in record order, so a
	// few shards hold a few phrases: steps drawn from a small block see a
	// fraction of the corpus at a time, and the model drifts toward it.
	// Prepare resolves 0 to the number used; a resumed job keeps its own.
	BlockShards int `json:"block_shards"`
	// CheckpointEvery is the checkpoint interval in steps; the last step
	// and a stop always checkpoint too.
	CheckpointEvery int64 `json:"checkpoint_every"`
	// CheckpointInterval, when positive, also checkpoints once this much
	// wall-clock time has passed since the last checkpoint (or the start),
	// which bounds the work a failure loses whatever the step speed
	// (TrainingJob's spec.checkpointInterval). Rank 0 alone writes
	// checkpoints, so the ranks need not agree on when.
	CheckpointInterval time.Duration `json:"checkpoint_interval,omitempty"`
	// CodebookFrames bounds the unit frames k-means clusters (an evenly
	// spaced subset is kept); 0 means 100000.
	CodebookFrames int `json:"codebook_frames"`
	// LogEvery is how many steps pass between progress log lines; 0 means 50.
	LogEvery int64 `json:"log_every"`
	// Warp, when positive, perturbs vocal-tract length: each sample's
	// encoder input is drawn, per epoch and from the seed, among the
	// unwarped one and copies with the mel axis stretched by 1 +- Warp and
	// 1 +- Warp/2 (see features.WarpMel), so the model meets more voices
	// than the corpus has. 0 trains on the audio as it is.
	Warp float64 `json:"warp,omitempty"`
}

// Limits of Config.
const (
	MaxSteps       = 1 << 40
	MaxGlobalBatch = 1 << 16
	MaxBlockShards = 1 << 12
	// DefaultBlockShards is Config.BlockShards 0 on a train split larger
	// than DefaultDataCacheBytes: 4 shards read at a time.
	DefaultBlockShards = 4
	MaxCodebookFrames  = 1 << 24
	MaxBudget          = 30 * 24 * time.Hour
	// MaxWarp bounds Config.Warp: past it formants cross band edges that
	// no speaker reaches.
	MaxWarp = 0.3
	// DefaultGracePeriod is how long a stop request may take: the current
	// step, one checkpoint and leaving the group.
	DefaultGracePeriod = 2 * time.Minute
)

// DefaultConfig is a job over dataset name/version with the model's default
// shape and schedule.
func DefaultConfig(job, name, version string) Config {
	return Config{
		JobID:           job,
		Dataset:         name,
		DatasetVersion:  version,
		Model:           model.DefaultConfig(nil),
		Adam:            model.DefaultAdamConfig(),
		Steps:           10000,
		GlobalBatch:     336, // about 256 pairs on the default corpus
		Positions:       6,
		Seed:            1,
		CheckpointEvery: 500,
	}
}

// withDefaults fills the zero fields that have defaults.
func (c Config) withDefaults() Config {
	if c.CodebookFrames == 0 {
		c.CodebookFrames = 100000
	}
	if c.LogEvery == 0 {
		c.LogEvery = 50
	}
	if c.Adam.DecaySteps == 0 {
		c.Adam.DecaySteps = c.Steps
	}
	return c
}

// Validate checks every field that needs no I/O, naming the bad one and its
// limit. Languages and shapes that depend on the data are checked by
// Prepare.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := shard.ValidateName("job id", c.JobID); err != nil {
		errs = append(errs, fmt.Errorf("trainer: Config.JobID: %w", err))
	}
	if err := shard.ValidateName("dataset name", c.Dataset); err != nil {
		errs = append(errs, fmt.Errorf("trainer: Config.Dataset: %w", err))
	}
	if err := shard.ValidateName("dataset version", c.DatasetVersion); err != nil {
		errs = append(errs, fmt.Errorf("trainer: Config.DatasetVersion: %w", err))
	}
	rng := func(name string, v, lo, hi int64) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("trainer: Config.%s is %d: want %d..%d", name, v, lo, hi))
		}
	}
	rng("Steps", c.Steps, 1, MaxSteps)
	rng("GlobalBatch", int64(c.GlobalBatch), 1, MaxGlobalBatch)
	rng("Positions", int64(c.Positions), 0, 1<<14)
	if c.Budget < 0 || c.Budget > MaxBudget {
		errs = append(errs, fmt.Errorf("trainer: Config.Budget is %s: want 0 (none) up to %s", c.Budget, MaxBudget))
	}
	rng("BlockShards", int64(c.BlockShards), 0, MaxBlockShards)
	rng("CheckpointEvery", c.CheckpointEvery, 0, MaxSteps)
	if c.CheckpointInterval < 0 || c.CheckpointInterval > MaxBudget {
		errs = append(errs, fmt.Errorf("trainer: Config.CheckpointInterval is %s: want 0 (none) up to %s", c.CheckpointInterval, MaxBudget))
	}
	rng("CodebookFrames", int64(c.CodebookFrames), 1, MaxCodebookFrames)
	rng("LogEvery", c.LogEvery, 1, MaxSteps)
	if !(c.Warp >= 0 && c.Warp <= MaxWarp) {
		errs = append(errs, fmt.Errorf("trainer: Config.Warp is %g: want 0 (none) up to %g", c.Warp, MaxWarp))
	}
	if err := c.Adam.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("trainer: Config.Adam: %w", err))
	}
	// The model's shape, with placeholders for what the data decides.
	mc := c.Model
	if len(mc.Languages) == 0 {
		mc.Languages = []string{"placeholder"}
	}
	if mc.MaxUnits == 0 {
		mc.MaxUnits = 2
	}
	if err := mc.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("trainer: Config.Model: %w", err))
	}
	if c.Model.MaxUnits < 0 {
		errs = append(errs, fmt.Errorf("trainer: Config.Model.MaxUnits is %d: want 0 (from the data) or at least 2", c.Model.MaxUnits))
	}
	return errors.Join(errs...)
}
