package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"babelfish.dev/babelfish/scheduler/core"
	"babelfish.dev/babelfish/scheduler/sim"
)

type config struct {
	traces    string
	workloads []string
	seeds     []int64
	policies  []string
	tune      float64
	parallel  int
	tpNodes   int
	tpPods    int
	curves    bool

	replaySeeds     []int64
	replayTune      float64
	replayTimeScale float64
}

func main() {
	var c config
	var workloads, seeds, policies string
	flag.StringVar(&c.traces, "traces", filepath.Join("scheduler", "sim", "testdata", "openb"), "directory with the openb CSVs and expected_allo_discrete.csv")
	flag.StringVar(&workloads, "workloads", "default,gpushare40,multigpu50", "comma-separated openb workloads (openb_pod_list_<name>.csv)")
	flag.StringVar(&seeds, "seeds", "42-51", "seeds: a range lo-hi or a comma-separated list")
	flag.StringVar(&policies, "policies", "babelfish,fgd,bestfit,spread", "comma-separated policies")
	flag.Float64Var(&c.tune, "tune", 1.3, "tune ratio of the replay")
	flag.IntVar(&c.parallel, "parallel", runtime.GOMAXPROCS(0), "replays run at once")
	flag.IntVar(&c.tpNodes, "throughput-nodes", 1000, "nodes in the throughput run (0 skips it)")
	flag.IntVar(&c.tpPods, "throughput-pods", 10000, "pods in the throughput run")
	flag.BoolVar(&c.curves, "curves", false, "also print the mean curves, levels 80..130")
	var replaySeeds string
	flag.StringVar(&replaySeeds, "replay-seeds", "42-51", "seeds of the replays with durations (queueing delay, JCT); \"none\" skips them")
	flag.Float64Var(&c.replayTune, "replay-tune", 1.3, "tune ratio of the replays with durations")
	flag.Float64Var(&c.replayTimeScale, "replay-time-scale", 30000, "replays with durations: arrival times are divided by this (durations are not)")
	flag.Parse()
	var err error
	c.workloads = splitList(workloads)
	c.policies = splitList(policies)
	if c.seeds, err = parseSeeds(seeds); err != nil {
		fail(err)
	}
	if replaySeeds != "none" {
		if c.replaySeeds, err = parseSeeds(replaySeeds); err != nil {
			fail(fmt.Errorf("-replay-seeds: %w", err))
		}
	}
	if !(c.replayTimeScale > 0) || math.IsInf(c.replayTimeScale, 0) {
		fail(fmt.Errorf("-replay-time-scale %g: must be a finite number > 0", c.replayTimeScale))
	}
	if c.parallel < 1 {
		fail(fmt.Errorf("-parallel %d: must be >= 1", c.parallel))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		fail(err)
	}
}

func fail(err error) {
	slog.Error("bench scheduler", "err", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseSeeds(s string) ([]int64, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.ParseInt(lo, 10, 64)
		b, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 != nil || err2 != nil || b < a || b-a > 1000 {
			return nil, fmt.Errorf("-seeds %q: want lo-hi with lo <= hi, at most 1000 apart", s)
		}
		var out []int64
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
		return out, nil
	}
	var out []int64
	for _, p := range splitList(s) {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("-seeds %q: %q is not an integer", s, p)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-seeds %q: no seeds", s)
	}
	return out, nil
}

type job struct {
	workload, policy string
	seed             int64
}

func run(ctx context.Context, c config) error {
	nodes, err := sim.ReadNodesFile(filepath.Join(c.traces, "openb_node_list_gpu_node.csv"))
	if err != nil {
		return err
	}
	published, err := sim.ReadPublishedFile(filepath.Join(c.traces, "expected_allo_discrete.csv"))
	if err != nil {
		return err
	}
	tasks := map[string][]sim.Task{}
	for _, w := range c.workloads {
		if tasks[w], err = sim.ReadTasksFile(filepath.Join(c.traces, "openb_pod_list_"+w+".csv")); err != nil {
			return err
		}
	}
	start := time.Now()
	results, err := replayAll(ctx, c, c.seeds, nodes, tasks, func(cfg *sim.Config) { cfg.Tune = c.tune })
	if err != nil {
		return err
	}
	fmt.Printf("bench scheduler replays=%d workloads=%s seeds=%d-%d parallel=%d wall_s=%.1f\n",
		len(c.workloads)*len(c.policies)*len(c.seeds), strings.Join(c.workloads, ","), c.seeds[0], c.seeds[len(c.seeds)-1], c.parallel, time.Since(start).Seconds())

	for _, w := range c.workloads {
		// Seeds the artifact did not publish are compared with our fgd.
		ref := "published_fgd"
		pubFGD, err := sim.MeanPublished(published, w, "FGD", c.seeds)
		if err != nil {
			if !hasPolicy(c.policies, "fgd") {
				return fmt.Errorf("%w (and -policies has no fgd to compare with)", err)
			}
			ref, pubFGD = "our_fgd", meanCurve(results, w, "fgd", c.seeds)
		}
		pubBF, errBF := sim.MeanPublished(published, w, "BestFit", c.seeds)
		for _, p := range c.policies {
			mean := meanCurve(results, w, p, c.seeds)
			line := fmt.Sprintf("bench scheduler workload=%s policy=%s alloc_at_100=%.2f alloc_at_130=%.2f %s_at_100=%.2f %s_at_130=%.2f ratio_vs_%s=%.4f",
				w, p, mean[100], mean[130], ref, pubFGD[100], ref, pubFGD[130], ref, mean[130]/pubFGD[130])
			if p == "bestfit" && errBF == nil {
				line += fmt.Sprintf(" published_bestfit_at_100=%.2f published_bestfit_at_130=%.2f", pubBF[100], pubBF[130])
			}
			if p == "fgd" && ref == "published_fgd" {
				line += fmt.Sprintf(" max_abs_gap_vs_published_fgd=%.2f", maxAbsGap(mean[:], pubFGD[:], 0))
			}
			fmt.Println(line)
			if c.curves {
				fmt.Printf("curve workload=%s policy=%s 80..130=%s\n", w, p, fmtCurve(mean[80:]))
			}
		}
		if c.curves {
			fmt.Printf("curve workload=%s policy=%s 80..130=%s\n", w, ref, fmtCurve(pubFGD[80:]))
		}
		if hasPolicy(c.policies, "babelfish") {
			mean := meanCurve(results, w, "babelfish", c.seeds)
			margin, at := math.Inf(1), 0
			for l := 90; l < sim.CurveLevels; l++ {
				if d := mean[l] - pubFGD[l]; d < margin {
					margin, at = d, l
				}
			}
			fmt.Printf("bench scheduler workload=%s policy=babelfish min_margin_from_90=%.3f at_level=%d (babelfish - %s, mean of %d seeds)\n", w, margin, at, ref, len(c.seeds))
		}
	}
	if len(c.replaySeeds) > 0 {
		if err := replayDurations(ctx, c, nodes, tasks); err != nil {
			return err
		}
	}
	if c.tpNodes > 0 {
		return throughput(c, nodes, tasks)
	}
	return nil
}

// replayDurations replays the workloads whose pod lists carry times with
// their durations (sim.Config.Durations) for every policy and seed, and
// reports queueing delay and JCT beside fgd's from the same run. Figures
// are means over seeds of each replay's statistic.
func replayDurations(ctx context.Context, c config, nodes []core.NodeInfo, tasks map[string][]sim.Task) error {
	timed := map[string][]sim.Task{}
	var names []string
	for _, w := range c.workloads {
		if slices.ContainsFunc(tasks[w], func(t sim.Task) bool { return !t.Timed }) {
			fmt.Printf("bench scheduler-replay workload=%s skipped=no_times (the pod list has no creation_time and deletion_time)\n", w)
			continue
		}
		timed[w] = tasks[w]
		names = append(names, w)
	}
	if len(names) == 0 {
		return nil
	}
	rc := c
	rc.workloads = names
	start := time.Now()
	results, err := replayAll(ctx, rc, c.replaySeeds, nodes, timed, func(cfg *sim.Config) {
		cfg.Tune, cfg.Durations, cfg.TimeScale = c.replayTune, true, c.replayTimeScale
	})
	if err != nil {
		return err
	}
	fmt.Printf("bench scheduler-replay replays=%d workloads=%s seeds=%d-%d tune=%g time_scale=%g parallel=%d wall_s=%.1f\n",
		len(names)*len(c.policies)*len(c.replaySeeds), strings.Join(names, ","), c.replaySeeds[0], c.replaySeeds[len(c.replaySeeds)-1],
		c.replayTune, c.replayTimeScale, c.parallel, time.Since(start).Seconds())
	for _, w := range names {
		ref := map[string]float64{}
		if hasPolicy(c.policies, "fgd") {
			ref = meanReplay(results, w, "fgd", c.replaySeeds)
		}
		for _, p := range c.policies {
			m := meanReplay(results, w, p, c.replaySeeds)
			line := fmt.Sprintf("bench scheduler-replay workload=%s policy=%s queue_delay_mean=%.2f queue_delay_p50=%.2f queue_delay_p95=%.2f queue_delay_p99=%.2f queue_delay_max=%.1f queue_delay_gpu_weighted=%.2f jct_mean=%.1f jct_p50=%.1f jct_p99=%.1f waited=%.0f never_ran=%.1f util_peak=%.2f makespan_s=%.0f",
				w, p, m["delay_mean"], m["delay_p50"], m["delay_p95"], m["delay_p99"], m["delay_max"], m["delay_gpu"], m["jct_mean"], m["jct_p50"], m["jct_p99"], m["waited"], m["never_ran"], m["util_peak"], m["makespan"])
			if len(ref) > 0 {
				line += fmt.Sprintf(" ratio_jct_vs_fgd=%.6f ratio_queue_delay_vs_fgd=%.4f", m["jct_mean"]/ref["jct_mean"], m["delay_mean"]/ref["delay_mean"])
			}
			fmt.Println(line)
		}
	}
	return nil
}

// meanReplay averages a policy's replay figures over the seeds.
func meanReplay(results map[job]*sim.Result, w, p string, seeds []int64) map[string]float64 {
	m := map[string]float64{}
	for _, s := range seeds {
		r := results[job{w, p, s}].Replay
		for k, v := range map[string]float64{
			"delay_mean": r.QueueDelay.Mean, "delay_p50": r.QueueDelay.P50, "delay_p95": r.QueueDelay.P95,
			"delay_p99": r.QueueDelay.P99, "delay_max": r.QueueDelay.Max, "delay_gpu": r.QueueDelayGPU, "jct_mean": r.JCT.Mean,
			"jct_p50": r.JCT.P50, "jct_p99": r.JCT.P99, "waited": float64(r.Waited),
			"never_ran": float64(r.NeverRan), "util_peak": r.UtilPeak, "makespan": r.Makespan,
		} {
			m[k] += v / float64(len(seeds))
		}
	}
	return m
}

func hasPolicy(ps []string, p string) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func replayAll(ctx context.Context, c config, seeds []int64, nodes []core.NodeInfo, tasks map[string][]sim.Task, set func(*sim.Config)) (map[job]*sim.Result, error) {
	var jobs []job
	for _, w := range c.workloads {
		for _, p := range c.policies {
			for _, s := range seeds {
				jobs = append(jobs, job{w, p, s})
			}
		}
	}
	results := make(map[job]*sim.Result, len(jobs))
	var mu sync.Mutex
	var firstErr error
	todo := make(chan job)
	var wg sync.WaitGroup
	for range c.parallel {
		wg.Go(func() {
			for j := range todo {
				cfg := sim.Config{Nodes: nodes, Tasks: tasks[j.workload], Policy: j.policy, Seed: j.seed}
				set(&cfg)
				r, err := sim.Run(ctx, cfg)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s/%s/%d: %w", j.workload, j.policy, j.seed, err)
				}
				results[j] = r
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		todo <- j
	}
	close(todo)
	wg.Wait()
	return results, firstErr
}

func meanCurve(results map[job]*sim.Result, w, p string, seeds []int64) [sim.CurveLevels]float64 {
	var mean [sim.CurveLevels]float64
	for _, s := range seeds {
		r := results[job{w, p, s}]
		for l := range mean {
			mean[l] += r.Curve[l]
		}
	}
	for l := range mean {
		mean[l] /= float64(len(seeds))
	}
	return mean
}

func maxAbsGap(a, b []float64, from int) float64 {
	g := 0.0
	for l := from; l < len(a) && l < len(b); l++ {
		g = max(g, math.Abs(a[l]-b[l]))
	}
	return g
}

func fmtCurve(c []float64) string {
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(parts, ",")
}

// throughput places pods drawn from the default trace (or the first
// workload) onto a cluster of nodes drawn from the openb node list, one at a
// time through core.Placer, and reports placements per second.
func throughput(c config, nodes []core.NodeInfo, tasks map[string][]sim.Task) error {
	src := tasks["default"]
	if src == nil {
		src = tasks[c.workloads[0]]
	}
	rng := rand.New(rand.NewSource(1))
	cluster := make([]core.NodeInfo, c.tpNodes)
	for i := range cluster {
		n := nodes[rng.Intn(len(nodes))]
		n.Name = fmt.Sprintf("node-%05d", i)
		cluster[i] = n
	}
	pods := make([]core.Request, c.tpPods)
	for i := range pods {
		pods[i] = src[rng.Intn(len(src))].Req
	}
	w, err := core.WorkloadFromRequests(pods, 0.95)
	if err != nil {
		return err
	}
	for _, p := range c.policies {
		sc, err := core.NewScorer(p, w)
		if err != nil {
			return err
		}
		st, err := core.NewState(cluster)
		if err != nil {
			return err
		}
		placer := core.NewPlacer(sc)
		placed := 0
		start := time.Now()
		for i := range pods {
			if ch, ok := placer.Best(st, &pods[i], nil); ok {
				if err := st.Apply(st.Bind("p", i, ch.Node, &pods[i], ch.GPUs)); err != nil {
					return err
				}
				placed++
			}
		}
		el := time.Since(start)
		fmt.Printf("bench scheduler throughput policy=%s nodes=%d pods=%d placed=%d seconds=%.3f placements_per_s=%.0f\n",
			p, c.tpNodes, c.tpPods, placed, el.Seconds(), float64(c.tpPods)/el.Seconds())
	}
	return nil
}
