package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/trainer"
)

type evalOptions struct {
	job, checkpoint string
	step            int64
	cfg             trainer.EvalConfig
	langs           string
	asJSON          bool
	noSave          bool
	recompute       bool
	storeFlags      *storeFlags
}

func newEvalCmd() *cobra.Command {
	o := &evalOptions{}
	c := &cobra.Command{
		Use:   "eval --job JOB [--step N | --checkpoint PREFIX]",
		Short: "Evaluate a checkpoint: MCD-DTW and concept accuracy beside floor and baseline",
		Long: `Eval loads a committed checkpoint and a dataset version from object storage
and scores the model on the dataset's three test splits: unseen voices (held-out
speakers, every direction), unseen phrases (held-out records) and unseen pairs
(directions never trained on).

Each translation is scored by concept accuracy (is the DTW-nearest clean
rendering among every phrase of the target language the right phrase?) and by
MCD-DTW against the reference rendering, always beside the vocoder floor
(resynthesis of the reference's true units) and the copy-the-input baseline.

The report is stored under the checkpoint
(checkpoints/<job>/<step>/eval/<dataset>-<version>-n<N>-b<W>-s<seed>/, with
metrics.json holding the flat metrics a promotion policy compares:
concept_accuracy, mcd, unseen_pairs_concept_accuracy, ...). An evaluation that
is already stored is printed, not recomputed, unless --recompute.`,
		Args:    cobra.NoArgs,
		GroupID: "research",
		RunE:    func(cmd *cobra.Command, _ []string) error { return runEval(cmd, o) },
	}
	f := c.Flags()
	f.StringVar(&o.job, "job", "", "training job whose checkpoint to evaluate (its latest, unless --step)")
	f.Int64Var(&o.step, "step", 0, "evaluate the job's checkpoint of this step")
	f.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint prefix, e.g. checkpoints/job/000000001000/ (instead of --job)")
	f.StringVar(&o.cfg.Dataset, "dataset", "", "dataset name (default: the one the checkpoint was trained on)")
	f.StringVar(&o.cfg.DatasetVersion, "version", "", "dataset version (default: the checkpoint's)")
	f.StringVar(&o.langs, "langs", "", "comma-separated languages whose directions to evaluate (default: all of the model's)")
	f.IntVar(&o.cfg.PerDirection, "per-dir", 20, "unseen-voices translations per direction, drawn with --seed (0: all)")
	f.IntVar(&o.cfg.PhrasesPerDirection, "phrases-per-dir", 0, "unseen-phrases translations per direction (0: --per-dir)")
	f.IntVar(&o.cfg.PairsPerDirection, "pairs-per-dir", 0, "unseen-pairs translations per direction (0: 5 x --per-dir)")
	f.IntVar(&o.cfg.SeenPerDirection, "seen-per-dir", 0, "also score this many translations per trained direction by training voices (split seen_voices: the fit to the training data, beside unseen voices' generalisation; 0: skip)")
	f.IntVar(&o.cfg.Beam, "beam", 1, "beam width (1: greedy)")
	f.Uint64Var(&o.cfg.Seed, "seed", 1, "seed of the draw of translations")
	f.StringVar(&o.cfg.Vocoder, "vocoder", "", "render the model's and the floor's units with this vocoder, griffin-lim or loops (default: the model's own)")
	f.IntVar(&o.cfg.Workers, "workers", 0, "parallel translations (0: one per CPU)")
	f.BoolVar(&o.asJSON, "json", false, "print the whole report as JSON instead of tables")
	f.BoolVar(&o.noSave, "no-save", false, "do not store the report under the checkpoint")
	f.BoolVar(&o.recompute, "recompute", false, "evaluate again even if this evaluation is stored (replacing it)")
	o.storeFlags = addStoreFlags(c)
	return c
}

func runEval(cmd *cobra.Command, o *evalOptions) error {
	switch {
	case o.checkpoint == "" && o.job == "":
		return errors.New("eval: give --job JOB (with --step N for a given step) or --checkpoint PREFIX")
	case o.checkpoint != "" && (o.job != "" || o.step != 0):
		return errors.New("eval: --checkpoint names the checkpoint: leave out --job and --step")
	case o.step < 0:
		return fmt.Errorf("eval: --step %d: want > 0", o.step)
	}
	if o.langs != "" {
		o.cfg.Languages = strings.Split(o.langs, ",")
	}
	ctx := cmd.Context()
	store, err := o.storeFlags.open(ctx)
	if err != nil {
		return err
	}
	prefix := o.checkpoint
	switch {
	case prefix != "":
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
	case o.step > 0:
		prefix = trainer.CheckpointPrefix(o.job, o.step)
	default:
		if prefix, err = trainer.LatestCheckpoint(ctx, store, o.job); err != nil {
			return err
		}
	}
	o.cfg.Checkpoint = prefix
	o.cfg.Progress = cmd.ErrOrStderr()
	o.cfg.Log = slog.Default()

	// A stored evaluation of the same checkpoint, data and settings is
	// printed as it is. The dataset defaults come from the checkpoint, so
	// resolve them first (LoadCheckpoint is cheap next to an evaluation).
	if !o.recompute && !o.noSave {
		ds, ver := o.cfg.Dataset, o.cfg.DatasetVersion
		if ds == "" || ver == "" {
			ck, err := trainer.LoadCheckpoint(ctx, store, prefix)
			if err != nil {
				return err
			}
			if ds == "" {
				ds = ck.State.Config.Dataset
			}
			if ver == "" {
				ver = ck.State.Config.DatasetVersion
			}
		}
		c := o.cfg
		c.Dataset, c.DatasetVersion = ds, ver
		ep := trainer.EvalPrefix(prefix, c)
		if rep, err := trainer.LoadEval(ctx, store, ep); err == nil {
			slog.Info("evaluation already stored: printing it (--recompute to run it again)", "prefix", ep)
			return printEval(cmd, o, rep)
		} else if err != nil && !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrIncomplete) {
			return err
		}
	}
	rep, err := trainer.Evaluate(ctx, store, o.cfg)
	if err != nil {
		return err
	}
	if err := printEval(cmd, o, rep); err != nil {
		return err
	}
	if o.noSave {
		return nil
	}
	if o.recompute {
		c := o.cfg
		c.Dataset, c.DatasetVersion = rep.Dataset, rep.DatasetVersion
		if _, err := store.DeletePrefix(ctx, trainer.EvalPrefix(rep.Checkpoint, c)); err != nil {
			return err
		}
	}
	saved, err := trainer.SaveEval(ctx, store, rep)
	if err != nil {
		return err
	}
	slog.Info("evaluation stored", "prefix", saved)
	return nil
}

func printEval(cmd *cobra.Command, o *evalOptions, rep *trainer.EvalReport) error {
	if o.asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*trainer.EvalReport
			Metrics map[string]float64 `json:"metrics"`
		}{rep, rep.Metrics()})
	}
	return rep.WriteText(cmd.OutOrStdout())
}
