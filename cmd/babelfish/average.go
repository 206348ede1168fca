package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/trainer"
)

type averageOptions struct {
	job, to    string
	last       int
	storeFlags *storeFlags
}

func newAverageCmd() *cobra.Command {
	o := &averageOptions{}
	c := &cobra.Command{
		Use:   "average --job JOB --last N [--to NAME]",
		Short: "Average the weights of a job's last N checkpoints into a new checkpoint",
		Long: `Average reads a training job's last N committed checkpoints, averages their
weights element by element and commits the result as a checkpoint of another job
name (default JOB-avgN), at the last checkpoint's step and with its optimizer
state, so eval and promote treat it like any checkpoint. Its state lists
the checkpoints it averages (averaged_from).

Checkpoint averaging takes the mean of the points a run passes through at the end
of its schedule, often a flatter minimum that generalises better than the last
step. Fix N before looking at test figures: choosing it by test accuracy would be
selecting on the test set. The checkpoints must come from one run (same model
configuration and codebook).`,
		Example: `  babelfish average --job accuracy --last 5
  babelfish eval --job accuracy-avg5`,
		Args:    cobra.NoArgs,
		GroupID: "research",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.job == "" {
				return fmt.Errorf("average: give --job JOB")
			}
			if o.to == "" {
				o.to = fmt.Sprintf("%s-avg%d", o.job, o.last)
			}
			ctx := cmd.Context()
			store, err := o.storeFlags.open(ctx)
			if err != nil {
				return err
			}
			prefix, err := trainer.AverageCheckpoints(ctx, store, o.job, o.last, o.to)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "averaged the last %d checkpoints of %s into %s (eval it with: babelfish eval --job %s)\n", o.last, o.job, prefix, o.to)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.job, "job", "", "training job whose checkpoints to average")
	f.IntVar(&o.last, "last", 5, fmt.Sprintf("how many of its newest checkpoints to average (1..%d)", trainer.MaxAverage))
	f.StringVar(&o.to, "to", "", "job name for the averaged checkpoint (default JOB-avgN)")
	o.storeFlags = addStoreFlags(c)
	return c
}
