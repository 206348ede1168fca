package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
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
		timeScale           float64
		durations, indent   bool
	)
	cmd := &cobra.Command{
		Use:   "sim --nodes NODES.csv --pods PODS.csv --policy P --seed S [--tune 1.3] [--replay-durations [--time-scale K]]",
		Short: "Replay an openb GPU cluster trace through the scheduler and print the allocation curve",
		Long: `Replay an Alibaba openb trace through the scheduling core, as the artifact of
"Beware of Fragmentation" (Weng et al., ATC'23) runs it: the pod list is tuned
to --tune x the cluster's GPU milli with seeded random copies of its tasks,
tasks arrive one by one and never leave, and each is placed or left pending.

Prints JSON: alloc_at_100 and alloc_at_130 (GPU allocation, percent of the
cluster's GPU milli, when the arrived GPU demand reaches 100% and 130% of it),
curve (levels 0..130), fragmentation at the end, and pending tasks.

With --replay-durations, time runs too: each task arrives at its creation_time
divided by --time-scale (a tuning copy at the creation_time of a trace task
drawn by the seed), runs for its trace duration (deletion_time minus
scheduled_time; minus creation_time for a task the trace never scheduled) and
then frees its GPUs. Waiting tasks form one queue, as the scheduler's core
treats equal-priority jobs: whenever something arrives or ends, the queue is
walked oldest first and every task that fits is placed (FIFO with backfill).
The JSON then also holds "replay": queueing delay and JCT in seconds (mean,
p50, p95, p99, max; nearest-rank percentiles), makespan, utilisation over time
(mean, peak, and a 100-slice curve of the makespan), the tasks that never ran
(no node of the idle cluster can host them) and the longest queue. The pod
list must have creation_time and deletion_time (multigpu50 has none).
Deterministic for a given seed.

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
			if cmd.Flags().Changed("time-scale") && !durations {
				return fmt.Errorf("--time-scale: only applies with --replay-durations")
			}
			if !(timeScale > 0) || math.IsInf(timeScale, 0) {
				return fmt.Errorf("--time-scale %g: must be a finite number > 0", timeScale)
			}
			if !durations {
				timeScale = 0
			}
			res, err := sim.Run(cmd.Context(), sim.Config{
				Nodes: nl, Tasks: tl, Policy: policy, Seed: seed, Tune: tune, Coverage: coverage,
				Durations: durations, TimeScale: timeScale,
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
	f.BoolVar(&durations, "replay-durations", false, "replay time: tasks arrive at creation_time, run their trace duration and leave; report queueing delay and JCT")
	f.Float64Var(&timeScale, "time-scale", 1, "with --replay-durations: divide arrival times (not durations) by this, so arrivals come this many times faster")
	f.BoolVar(&indent, "indent", false, "indent the JSON")
	return cmd
}
