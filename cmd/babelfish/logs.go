package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newLogsCmd() *cobra.Command {
	var (
		rank   int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs NAME [--rank N] [-f]",
		Short: "Show a training job's logs",
		Long: `Show one rank's output (rank 0 by default). Against ` + "`babelfish up`" + ` it is every
placement of the gang, each after a header line naming its generation and
the checkpoint it resumed from; with --kubeconfig it is the rank's pod of
the newest placement. -f follows the output until the job ends.`,
		Args: cobra.ExactArgs(1),
	}
	t := addTargetFlags(cmd)
	cmd.Flags().IntVar(&rank, "rank", 0, "which rank's output")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the job ends")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if rank < 0 {
			return fmt.Errorf("--rank %d: must be >= 0", rank)
		}
		b, err := t.backend()
		if err != nil {
			return err
		}
		return b.Logs(cmd.Context(), args[0], rank, follow, cmd.OutOrStdout())
	}
	return cmd
}
