package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/trainer"
)

type promoteOptions struct {
	model      string
	job        string
	step       int64
	checkpoint string
	note       string
	noFlip     bool
	rollback   bool
	to         int64
	list       bool
}

// newPromoteCmd is `babelfish promote`: checkpoint -> release -> current,
// rollback, and the release list.
func newPromoteCmd() *cobra.Command {
	o := promoteOptions{}
	cmd := &cobra.Command{
		Use: `promote --model NAME (--job JOB [--step N] | --checkpoint PREFIX)
  babelfish promote --model NAME --rollback [--to N]
  babelfish promote --model NAME --list`,
		Short:   "Promote a checkpoint to a model release, or roll back",
		GroupID: "serve",
		Long: `Promote a training checkpoint to a release of a model and make it current, so
serving replicas swap to it with no dropped request.

The checkpoint's weights are copied into the model's storage, checked against
the checkpoint's sha256, read back and loaded before models/<model>/releases/<n>.json
is written and models/<model>/current flipped; a bad checkpoint changes
nothing. --job takes the job's latest committed checkpoint, or --step N's.

--rollback flips current back to the release before it (or --to N), after
verifying that release's weights again. --list shows every release with its
checkpoint and eval metrics, current marked.`,
		Args: cobra.NoArgs,
	}
	store := addStoreFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model name (models/<model>/)")
	f.StringVar(&o.job, "job", "", "training job whose checkpoint to promote")
	f.Int64Var(&o.step, "step", 0, "checkpoint step of --job (default: the latest)")
	f.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint prefix, e.g. checkpoints/<job>/<step>/")
	f.StringVar(&o.note, "note", "", "note recorded in the release")
	f.BoolVar(&o.noFlip, "no-flip", false, "create the release but leave current where it is")
	f.BoolVar(&o.rollback, "rollback", false, "flip current back to an earlier release")
	f.Int64Var(&o.to, "to", 0, "release number --rollback goes to (default: the one below current)")
	f.BoolVar(&o.list, "list", false, "list the model's releases")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if o.model == "" {
			return errors.New("--model is required")
		}
		modes := 0
		for _, b := range []bool{o.rollback, o.list, o.job != "" || o.checkpoint != ""} {
			if b {
				modes++
			}
		}
		if modes != 1 {
			return errors.New("give exactly one of --job/--checkpoint, --rollback or --list")
		}
		if o.job != "" && o.checkpoint != "" {
			return errors.New("--job and --checkpoint exclude each other")
		}
		if o.to != 0 && !o.rollback {
			return errors.New("--to goes with --rollback")
		}
		st, err := store.open(ctx)
		if err != nil {
			return err
		}
		reg, err := registry.New(st, o.model)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		switch {
		case o.list:
			return listReleases(cmd, reg)
		case o.rollback:
			rel, err := reg.Rollback(ctx, o.to)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "current is %s (rolled back; checkpoint %s)\n", rel.Name(), rel.Checkpoint)
			return err
		}
		prefix := o.checkpoint
		if o.job != "" {
			if o.step > 0 {
				prefix = trainer.CheckpointPrefix(o.job, o.step)
			} else if prefix, err = trainer.LatestCheckpoint(ctx, st, o.job); err != nil {
				return err
			}
		}
		var popts []registry.PromoteOption
		// The newest `babelfish eval` of the checkpoint goes into the
		// release, so automatic promotions later compare against it.
		if m, err := storedEval(ctx, st, prefix, ""); err != nil {
			return err
		} else if m != nil {
			popts = append(popts, registry.WithMetrics(m))
		}
		if o.note != "" {
			popts = append(popts, registry.WithNote(o.note))
		}
		if o.noFlip {
			popts = append(popts, registry.WithoutFlip())
		}
		rel, err := reg.Promote(ctx, prefix, popts...)
		if err != nil {
			return err
		}
		state := "current"
		if o.noFlip {
			state = "not current (--no-flip)"
		}
		_, err = fmt.Fprintf(out, "%s from %s (step %d, metrics %s): %s\n", rel.Name(), rel.Checkpoint, rel.Step, fmtMetrics(rel.Metrics), state)
		return err
	}
	return cmd
}

func listReleases(cmd *cobra.Command, reg *registry.Registry) error {
	ctx := cmd.Context()
	rels, err := reg.List(ctx)
	if err != nil {
		return err
	}
	var cur int64
	if c, err := reg.Current(ctx); err == nil {
		cur = c.Release
	} else if !errors.Is(err, registry.ErrNoCurrent) {
		return err
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tCURRENT\tCHECKPOINT\tSTEP\tMETRICS\tCREATED\tNOTE")
	for _, r := range rels {
		mark := ""
		if r.Number == cur {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Number, mark, r.Checkpoint, r.Step, fmtMetrics(r.Metrics), r.Created.Format("2006-01-02 15:04:05"), r.Note)
	}
	return tw.Flush()
}

func fmtMetrics(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, m[k]))
	}
	return strings.Join(parts, ",")
}
