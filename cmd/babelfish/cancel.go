package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCancelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a training job",
		Long: `Cancel a training job. Its ranks get SIGTERM: they finish the current step,
write a checkpoint and exit, so nothing committed is lost. Against
` + "`babelfish up`" + ` the job stays listed as Failed (reason Cancelled) with its logs;
with --kubeconfig the TrainingJob is deleted and its pods with it.`,
		Args: cobra.ExactArgs(1),
	}
	t := addTargetFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		b, err := t.backend()
		if err != nil {
			return err
		}
		if _, err := b.Cancel(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "trainingjob/%s cancelled on %s\n", args[0], b.Where())
		return nil
	}
	return cmd
}
