package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/scheduler/core"
	"babelfish.dev/babelfish/scheduler/sim"
)

// newSimCmd is `babelfish sim`: replay an openb trace through the scheduling
// core and print the allocation curve as JSON.
func newSimCmd() *cobra.Command {
	var (
		nodes, pods, policy string
		seed                int64
		tune, coverage      float64
		indent              bool
	)
	cmd := &cobra.Command{
		Use:   "sim --nodes NODES.csv --pods PODS.csv --policy P --seed S [--tune 1.3]",
		Short: "Replay an openb GPU cluster trace through the scheduler and print the allocation curve",
		Long: `Replay an Alibaba openb trace through the scheduling core, as the artifact of
"Beware of Fragmentation" (Weng et al., ATC'23) runs it: the pod list is tuned
to --tune x the cluster's GPU milli with seeded random copies of its tasks,
tasks arrive one by one and never leave, and each is placed or left pending.

Prints JSON: alloc_at_100 and alloc_at_130 (GPU allocation, percent of the
cluster's GPU milli, when the arrived GPU demand reaches 100% and 130% of it),
curve (levels 0..130), fragmentation at the end, and pending tasks.

Policies: ` + fmt.Sprint(core.PolicyNames()),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes == "" || pods == "" {
				return fmt.Errorf("--nodes and --pods are required")
			}
			nl, err := sim.ReadNodesFile(nodes)
			if err != nil {
				return fmt.Errorf("--nodes: %w", err)
			}
			tl, err := sim.ReadTasksFile(pods)
			if err != nil {
				return fmt.Errorf("--pods: %w", err)
			}
			start := time.Now()
			res, err := sim.Run(cmd.Context(), sim.Config{
				Nodes: nl, Tasks: tl, Policy: policy, Seed: seed, Tune: tune, Coverage: coverage,
			})
			if err != nil {
				return err
			}
			slog.Debug("sim done", "policy", policy, "seed", seed, "tasks", res.Tasks, "elapsed", time.Since(start))
			enc := json.NewEncoder(cmd.OutOrStdout())
			if indent {
				enc.SetIndent("", "  ")
			}
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodes, "nodes", "", "node list CSV (sn, cpu_milli, memory_mib, gpu, model)")
	f.StringVar(&pods, "pods", "", "pod list CSV (name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec, ...)")
	f.StringVar(&policy, "policy", "babelfish", fmt.Sprintf("placement policy: one of %v", core.PolicyNames()))
	f.Int64Var(&seed, "seed", 42, "seed for the shuffle, the tuning copies and tie-breaks")
	f.Float64Var(&tune, "tune", 1.3, "tune the pod list to this multiple of the cluster's GPU milli (0: as is)")
	f.Float64Var(&coverage, "coverage", 0.95, "share of tasks whose types form the workload the fragmentation policies plan for")
	f.BoolVar(&indent, "indent", false, "indent the JSON")
	return cmd
}
