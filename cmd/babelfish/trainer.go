package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/trainer"
	"babelfish.dev/babelfish/trainer/collective"
)

// trainerEnvPrefix: every trainer flag can also come from the environment
// as BABELFISH_TRAINER_<FLAG> (upper case, '-' -> '_'), which is how the
// scheduler and the local executor pass a TrainingJob's spec; a flag given
// on the command line wins.
const trainerEnvPrefix = "BABELFISH_TRAINER_"

type trainerOptions struct {
	cfg           trainer.Config
	langs         string
	enc           string
	metricsListen string
	grace         time.Duration
	progress      bool
	dataCache     int64
}

func newTrainerCmd() *cobra.Command {
	o := &trainerOptions{cfg: trainer.DefaultConfig(os.Getenv(collective.EnvJobID), "", "")}
	cmd := &cobra.Command{
		Use:   "trainer",
		Short: "Run one rank of a distributed training job (set by the scheduler)",
		Long: `Run one rank of a data-parallel training job of the speech-to-speech model.

Rank, world size and peers come from BABELFISH_RANK, BABELFISH_WORLD_SIZE and
BABELFISH_PEERS or BABELFISH_RENDEZVOUS (set by the scheduler or the local
executor); without BABELFISH_WORLD_SIZE it runs a single rank. With a
rendezvous, each rank also serves the all-reduce's ring data path on
BABELFISH_RING_LISTEN (default: a free port; the scheduler's pods use the
rendezvous port + 1). With static peers, list those data path addresses in
BABELFISH_RING_PEERS (same order as BABELFISH_PEERS); without it the ring
runs through the gRPC server on BABELFISH_PEERS, at about half the
bandwidth. Every flag can also be set as ` + trainerEnvPrefix + `<FLAG> (e.g. ` + trainerEnvPrefix + `GLOBAL_BATCH).

The job resumes from its latest committed checkpoint under
checkpoints/<job>/. SIGTERM (or SIGINT) finishes the current step on every
rank, writes a checkpoint and exits 0 within --grace-period; a second signal,
or the end of the grace period, exits at once without one.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&c.JobID, "job", c.JobID, "job id: checkpoints go to checkpoints/<job>/ (default env "+collective.EnvJobID+")")
	f.StringVar(&c.Dataset, "dataset", "", "dataset name")
	f.StringVar(&c.DatasetVersion, "dataset-version", "", "dataset version")
	f.StringVar(&o.langs, "langs", "", "comma-separated languages to train (default: all of the dataset's)")
	f.Int64Var(&c.Steps, "steps", c.Steps, "optimizer steps of the whole job (with --budget: an upper bound, default none)")
	f.DurationVar(&c.Budget, "budget", 0, "wall-clock budget of the whole job, e.g. 60m: the step count and the cosine decay are set from measured speed, and the job ends with a checkpoint when it is spent (0: --steps decide)")
	f.IntVar(&c.GlobalBatch, "global-batch", c.GlobalBatch, "samples per step over all ranks (about 3/4 of them yield a translation pair on the synthetic corpus)")
	f.IntVar(&c.Positions, "positions", c.Positions, "target positions scored per example and step, sampled (0: every position)")
	f.Int64Var(&o.dataCache, "data-cache", 0, "bytes of shards the loader keeps in memory (0: the whole train split up to 4 GiB)")
	f.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the data order, pair drawing and k-means")
	f.IntVar(&c.BlockShards, "block-shards", c.BlockShards, "shards whose samples the loader mixes (0: every train shard when the split fits in memory, at most 4 GiB, else 4; a resumed job keeps its own)")
	f.Int64Var(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "checkpoint interval in steps (0: only at the end and on stop)")
	f.IntVar(&c.CodebookFrames, "codebook-frames", 100000, "unit frames k-means clusters at most")
	f.Int64Var(&c.LogEvery, "log-every", 50, "steps between progress lines")
	f.Float64Var(&c.Adam.LR, "lr", c.Adam.LR, "peak learning rate")
	f.Int64Var(&c.Adam.WarmupSteps, "warmup-steps", c.Adam.WarmupSteps, "linear warmup steps")
	f.Int64Var(&c.Adam.DecaySteps, "decay-steps", 0, "step where the cosine decay ends (0: --steps)")
	f.Float64Var(&c.Adam.MinLRFraction, "min-lr-fraction", c.Adam.MinLRFraction, "learning rate at the end of the decay, as a fraction of --lr")
	f.Float64Var(&c.Adam.ClipNorm, "clip-norm", c.Adam.ClipNorm, "global gradient norm bound (0: no clipping)")
	f.DurationVar(&c.CheckpointInterval, "checkpoint-interval", 0, "also checkpoint when this much time has passed since the last one, e.g. 10m (0: steps only)")
	f.Float64Var(&c.Warp, "warp", c.Warp, "vocal-tract-length perturbation: also train on inputs with the mel axis stretched by 1+-W and 1+-W/2, drawn per sample and epoch (0: none; e.g. 0.1)")
	f.IntVar(&c.Model.Units, "units", c.Model.Units, "k-means units (the decoder's vocabulary)")
	f.IntVar(&c.Model.UnitStride, "unit-stride", c.Model.UnitStride, "10 ms frames per unit frame")
	f.IntVar(&c.Model.Segments, "segments", c.Model.Segments, "encoder pooling segments")
	f.IntVar(&c.Model.InputCepstra, "cepstra", c.Model.InputCepstra, "encoder input: mel cepstra c1..cN instead of log-mel (0: log-mel)")
	f.StringVar(&o.enc, "enc", "512,512", "encoder layer widths, comma-separated")
	f.IntVar(&c.Model.ContextHidden, "context", c.Model.ContextHidden, "context layer width")
	f.IntVar(&c.Model.DecoderHidden, "dec", c.Model.DecoderHidden, "decoder width")
	f.IntVar(&c.Model.DecoderLayers, "dec-layers", c.Model.DecoderLayers, "decoder hidden layers")
	f.IntVar(&c.Model.MaxUnits, "max-units", 0, "longest target in units, end marker included (0: from the data)")
	f.IntVar(&c.Model.MaxDuration, "max-duration", c.Model.MaxDuration, "longest duration class, in unit frames")
	f.Uint64Var(&c.Model.Seed, "init-seed", c.Model.Seed, "seed of the weight initialisation")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics on this address (e.g. :9090)")
	f.DurationVar(&o.grace, "grace-period", trainer.DefaultGracePeriod, "how long a stop on SIGTERM may take: the current step, a checkpoint and leaving")
	f.BoolVar(&o.progress, "progress", false, "draw a progress bar on stderr (rank 0)")
	store := addStoreFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := flagsFromEnv(cmd.Flags(), os.LookupEnv); err != nil {
			return err
		}
		if err := flagsFromJobEnv(cmd.Flags(), os.LookupEnv); err != nil {
			return err
		}
		return runTrainer(cmd, o, store)
	}
	return cmd
}

// flagsFromEnv sets every flag not given on the command line from its
// BABELFISH_TRAINER_* variable, if set.
func flagsFromEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || strings.HasPrefix(fl.Name, "s3-") {
			return
		}
		name := trainerEnvPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if err := fs.Set(fl.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for w := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil {
			return nil, fmt.Errorf("--%s %q: want comma-separated integers", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func runTrainer(cmd *cobra.Command, o *trainerOptions, sf *storeFlags) error {
	cfg := o.cfg
	if o.langs != "" {
		cfg.Model.Languages = strings.Split(o.langs, ",")
	}
	var err error
	if cfg.Model.EncoderHidden, err = parseInts("enc", o.enc); err != nil {
		return err
	}
	if cfg.Budget > 0 && !cmd.Flags().Changed("steps") { // set from the environment counts as changed
		cfg.Steps = trainer.MaxSteps
	}
	if o.dataCache < 0 {
		return fmt.Errorf("--data-cache is %d: want >= 0", o.dataCache)
	}
	if o.grace <= 0 {
		return fmt.Errorf("--grace-period is %s: want > 0", o.grace)
	}
	// Everything checkable without compute, before the rendezvous.
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Not cmd.Context(): main cancels that on the first SIGTERM, which would
	// abort the step this command's own handler below lets finish and
	// checkpoint; here only a second signal or the grace period cancels.
	ctx, cancel := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer cancel()
	store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	job, err := trainer.Prepare(ctx, cfg, store)
	if err != nil {
		return err
	}
	log := slog.Default()

	// SIGTERM: agree on a step, checkpoint, exit 0. After the grace period
	// or on a second signal: stop at once.
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			log.Info("stop requested: finishing the step and checkpointing", "signal", s.String(), "grace_period", o.grace)
			close(stop)
		case <-ctx.Done():
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: stopping without a checkpoint", "signal", s.String())
		case <-time.After(o.grace):
			log.Warn("grace period over: stopping without a checkpoint", "grace_period", o.grace)
		case <-ctx.Done():
		}
		cancel()
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := trainer.NewMetrics(reg)
	if err != nil {
		return err
	}
	lm, err := loader.NewMetrics(reg)
	if err != nil {
		return err
	}
	if o.metricsListen != "" {
		lis, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
		log.Info("serving metrics", "addr", lis.Addr().String())
	}

	var group *collective.Group
	if _, ok := os.LookupEnv(collective.EnvWorldSize); ok {
		ccfg, err := collective.ConfigFromEnv()
		if err != nil {
			return err
		}
		if ccfg.JobID == "" {
			ccfg.JobID = job.Config().JobID
		}
		ccfg.Logger = log
		if group, err = collective.Join(ctx, ccfg); err != nil {
			return err
		}
		defer group.Close()
	}
	opts := trainer.Options{Group: group, Stop: stop, Reporter: trainer.NopReporter{}, Metrics: metrics, LoaderMetrics: lm, Log: log, DataCacheBytes: o.dataCache}
	if o.progress {
		opts.Progress = cmd.ErrOrStderr()
	}
	res, err := job.Run(ctx, opts)
	if err != nil {
		return err
	}
	log.Info("trainer done", "step", res.Step, "stopped", res.Stopped, "checkpoint", res.LastCheckpoint)
	return nil
}
