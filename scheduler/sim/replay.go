package sim

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand"
	"slices"

	"babelfish.dev/babelfish/scheduler/core"
)

// CurveLevels is the number of arrival levels reported: 0..130 percent.
const CurveLevels = 131

// Config is one replay.
type Config struct {
	Nodes  []core.NodeInfo
	Tasks  []Task
	Policy string // a core.PolicyNames() entry
	Seed   int64
	// Tune resizes the task list to Tune x the cluster's GPU milli by adding
	// seeded random copies of trace tasks (or dropping random tasks when the
	// trace asks for more); 0 replays the trace as it is.
	Tune float64
	// Coverage is the share of tasks whose types make up the workload the
	// fragmentation-aware policies plan for; 0 means the published 0.95.
	Coverage float64
	// Durations replays time: tasks arrive at their creation_time, run for
	// their trace duration and free their resources, and pending tasks wait
	// in a queue (see Run). Every task must be Timed.
	Durations bool
	// TimeScale divides arrival times (not durations), so arrivals come
	// TimeScale times faster than in the trace; 0 means 1. Only with
	// Durations.
	TimeScale float64
}

// Result is what a replay reports. Percentages are of the cluster's GPU milli.
type Result struct {
	Policy        string  `json:"policy"`
	Seed          int64   `json:"seed"`
	Tune          float64 `json:"tune"`
	Nodes         int     `json:"nodes"`
	GPUs          int     `json:"gpus"`
	Tasks         int     `json:"tasks"`
	Placed        int     `json:"placed"`
	Pending       int     `json:"pending_tasks"`
	PendingGPU    int64   `json:"pending_gpu_milli"`
	WorkloadTypes int     `json:"workload_types"`
	// AllocAt100 and AllocAt130 are the GPU allocation (percent) when the
	// arrived GPU demand reaches 100% and 130% of the cluster.
	AllocAt100 float64 `json:"alloc_at_100"`
	AllocAt130 float64 `json:"alloc_at_130"`
	// Curve is the allocation at each arrival level 0..130 percent.
	Curve []float64 `json:"curve"`
	// Fragmentation at the end (with Durations: after the last arrival, as
	// at the end everything has left), by the paper's measure for the
	// trace's workload: GPU milli that the typical task could not use, and
	// its share of the idle GPU milli.
	FragGPUMilli  float64 `json:"frag_gpu_milli"`
	IdleGPUMilli  int64   `json:"idle_gpu_milli"`
	FragRatio     float64 `json:"frag_ratio_percent"`
	FragAt100     float64 `json:"frag_gpu_milli_at_100"`
	AllocatedGPU  int64   `json:"allocated_gpu_milli"`
	CapacityGPU   int64   `json:"capacity_gpu_milli"`
	ArrivedGPU    int64   `json:"arrived_gpu_milli"`
	PlacementsRun int     `json:"placements_tried"`
	// Replay holds the queueing figures of a replay with durations.
	Replay *Replay `json:"replay,omitempty"`
}

// Run replays the trace the way the FGD artifact does: the task list (sorted
// by name, then shuffled by the seed) is tuned to Tune x the cluster's GPU
// milli; tasks arrive one by one and never leave; each is placed by the
// policy or left pending; the allocation after each arrival is binned by
// arrival percent (rounded) and averaged per level.
//
// The seeded sequence follows the artifact's use of Go's math/rand (one draw
// before the shuffle, the shuffle, the tuning draws, a node permutation, then
// the tie-breaks), so the tuned task list matches the published runs seed
// for seed.
//
// With cfg.Durations the same list is replayed in time instead: tasks arrive
// at their creation_time / TimeScale, run for their trace duration and
// leave, and what does not fit waits in a FIFO queue with backfill, as the
// core queues equal-priority jobs; Result.Replay then holds queueing delay,
// JCT, makespan and utilisation over time.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	p, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Durations {
		return p.runDurations(ctx)
	}
	return p.runArrivals(ctx)
}

// prepared is a replay ready to run: the tuned task list in the seeded order,
// the placer and an idle cluster.
type prepared struct {
	cfg      Config
	tasks    []Task
	byName   []Task
	copies   int // the last copies tasks are tuning copies
	rng      *rand.Rand
	measure  *core.Workload
	scorer   core.Scorer
	placer   *core.Placer
	st       *core.State
	res      *Result
	capacity float64
}

func prepare(cfg Config) (*prepared, error) {
	if len(cfg.Nodes) == 0 {
		return nil, fmt.Errorf("sim nodes: none given")
	}
	if len(cfg.Tasks) == 0 {
		return nil, fmt.Errorf("sim tasks: none given")
	}
	if cfg.Tune < 0 || cfg.Tune > 100 {
		return nil, fmt.Errorf("sim tune %g: must be in 0..100", cfg.Tune)
	}
	if cfg.TimeScale < 0 || math.IsNaN(cfg.TimeScale) || math.IsInf(cfg.TimeScale, 0) {
		return nil, fmt.Errorf("sim time_scale %g: must be a finite number >= 0", cfg.TimeScale)
	}
	if cfg.TimeScale != 0 && !cfg.Durations {
		return nil, fmt.Errorf("sim time_scale %g: only applies when durations are replayed", cfg.TimeScale)
	}
	if cfg.Durations {
		for i := range cfg.Tasks {
			if !cfg.Tasks[i].Timed {
				return nil, fmt.Errorf("sim task %s: no creation_time and deletion_time, so its duration cannot be replayed", cfg.Tasks[i].Name)
			}
		}
	}
	byName := slices.Clone(cfg.Tasks)
	slices.SortStableFunc(byName, func(a, b Task) int { return cmp.Compare(a.Name, b.Name) })
	reqs := make([]core.Request, len(byName))
	for i := range byName {
		reqs[i] = byName[i].Req
	}
	workload, err := core.EstimateWorkload(cfg.Policy, reqs, cfg.Nodes, cfg.Coverage)
	if err != nil {
		return nil, err
	}
	// Fragmentation is reported by one measure for every policy: the
	// paper's, against the artifact's workload estimate.
	measure, err := core.EstimateWorkload("fgd", reqs, cfg.Nodes, cfg.Coverage)
	if err != nil {
		return nil, err
	}
	scorer, err := core.NewScorer(cfg.Policy, workload)
	if err != nil {
		return nil, err
	}
	st, err := core.NewState(cfg.Nodes)
	if err != nil {
		return nil, err
	}

	rng := rand.New(rand.NewSource(cfg.Seed))
	rng.Int() // the artifact logs one draw right after seeding
	tasks := slices.Clone(byName)
	rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })
	copies := 0
	if cfg.Tune > 0 {
		n := len(tasks)
		tasks = tune(tasks, byName, cfg.Tune*float64(st.CapacityGPUMilli()), rng)
		copies = max(0, len(tasks)-n)
	}
	placer := core.NewPlacer(scorer, core.WithNodeOrder(nodeRanks(cfg.Nodes, rng)))

	res := &Result{
		Policy: cfg.Policy, Seed: cfg.Seed, Tune: cfg.Tune, Nodes: len(cfg.Nodes),
		Tasks: len(tasks), WorkloadTypes: len(workload.Types), CapacityGPU: st.CapacityGPUMilli(),
	}
	for i := range cfg.Nodes {
		res.GPUs += len(cfg.Nodes[i].GPUs)
	}
	if st.CapacityGPUMilli() == 0 {
		return nil, fmt.Errorf("sim nodes: the cluster has no GPUs")
	}
	return &prepared{
		cfg: cfg, tasks: tasks, byName: byName, copies: copies, rng: rng, measure: measure,
		scorer: scorer, placer: placer, st: st, res: res, capacity: float64(st.CapacityGPUMilli()),
	}, nil
}

// runArrivals is the artifact's experiment: arrivals only.
func (p *prepared) runArrivals(ctx context.Context) (*Result, error) {
	st, placer, res, tasks := p.st, p.placer, p.res, p.tasks
	bins := newBinner()
	fragAt100 := math.NaN()
	for i := range tasks {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		t := &tasks[i]
		res.ArrivedGPU += t.Req.TotalGPUMilli()
		res.PlacementsRun++
		if c, ok := placer.Best(st, &t.Req, nil); ok {
			if err := st.Apply(st.Bind(t.Name, 0, c.Node, &t.Req, c.GPUs)); err != nil {
				return nil, fmt.Errorf("sim task %s: %w", t.Name, err)
			}
			res.Placed++
		} else {
			res.Pending++
			res.PendingGPU += t.Req.TotalGPUMilli()
		}
		bins.add(res.ArrivedGPU, st.AllocatedGPUMilli(), res.GPUs)
		if math.IsNaN(fragAt100) && float64(res.ArrivedGPU) >= p.capacity {
			fragAt100, _ = p.measure.ClusterFrag(st)
		}
	}
	res.Curve = bins.curve()
	res.AllocAt100, res.AllocAt130 = res.Curve[100], res.Curve[130]
	p.recordFrag(fragAt100)
	return res, nil
}

// recordFrag fills the result's allocation and fragmentation from the
// state now, and the fragmentation when arrivals reached 100% (NaN: never).
func (p *prepared) recordFrag(fragAt100 float64) {
	res := p.res
	res.AllocatedGPU = p.st.AllocatedGPUMilli()
	frag, idle := p.measure.ClusterFrag(p.st)
	res.FragGPUMilli, res.IdleGPUMilli = round2(frag), idle
	if idle > 0 {
		res.FragRatio = round2(100 * frag / float64(idle))
	}
	if !math.IsNaN(fragAt100) {
		res.FragAt100 = round2(fragAt100)
	}
}

// nodeRanks reproduces the artifact's tie-break: it prefixes each node's
// name (in name order) with a seeded permutation index, and its scheduler
// gives ties to the smallest name, so the rank of a node is its index.
func nodeRanks(nodes []core.NodeInfo, rng *rand.Rand) []int {
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(nodes[a].Name, nodes[b].Name) })
	perm := rng.Perm(len(nodes))
	rank := make([]int, len(nodes))
	for i, pos := range order {
		rank[pos] = perm[i]
	}
	return rank
}

// tune grows (or shrinks) the shuffled task list to the target GPU milli the
// way the artifact does: copies are drawn uniformly from the name-sorted
// trace and appended until the next one would pass the target (the check
// uses the copy's per-GPU milli, as the artifact's does); when the trace asks
// for more, random tasks are dropped until it fits.
func tune(tasks, byName []Task, target float64, rng *rand.Rand) []Task {
	var total int64
	for i := range tasks {
		total += tasks[i].Req.TotalGPUMilli()
	}
	switch {
	case float64(total) > target:
		for float64(total) > target && len(tasks) > 0 {
			i := rng.Intn(len(tasks))
			total -= tasks[i].Req.TotalGPUMilli()
			tasks = slices.Delete(tasks, i, i+1)
		}
	case float64(total) < target:
		for i := 0; ; i++ {
			src := byName[rng.Intn(len(byName))]
			if float64(total+src.Req.GPUMilli) > target {
				break
			}
			total += src.Req.TotalGPUMilli()
			cp := src // a copy runs as long as its source
			cp.Name = fmt.Sprintf("%s-tuned-%d", src.Name, i)
			tasks = append(tasks, cp)
		}
	}
	return tasks
}

// binner averages the allocation over the arrivals at each arrival level
// with the artifact's analysis arithmetic (pandas and numpy): percent =
// milli / GPUs / 10; the arrival percent rounded half to even; each sample's
// allocation rounded to two decimals; the samples of a level summed pairwise
// as numpy does, averaged and rounded again; a level with no sample of its
// own takes the samples within one level of it.
type binner struct {
	samples [CurveLevels + 2][]float64
}

func newBinner() *binner { return &binner{} }

func (b *binner) add(arrivedMilli, allocMilli int64, gpus int) {
	l := int(math.RoundToEven(float64(arrivedMilli) / float64(gpus) / 10))
	if l < 0 || l > CurveLevels {
		return
	}
	b.samples[l] = append(b.samples[l], round2(float64(allocMilli)/float64(gpus)/10))
}

func (b *binner) curve() []float64 {
	out := make([]float64, CurveLevels)
	last := 0.0
	for l := range CurveLevels {
		s := b.samples[l]
		if len(s) == 0 {
			// The artifact takes the rows with l-1 <= level <= l+1, in
			// arrival order; arrival only grows, so l-1's come first.
			if l > 0 {
				s = append(s, b.samples[l-1]...)
			}
			s = append(s, b.samples[l+1]...)
		}
		if len(s) == 0 { // no arrival near this level: hold the last value
			out[l] = last
			continue
		}
		out[l] = round2(pairwiseSum(s) / float64(len(s)))
		last = out[l]
	}
	return out
}

// pairwiseSum adds like numpy's float64 sum: blocks of up to 128 with eight
// accumulators, larger arrays split in halves (multiples of 8).
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		s := 0.0
		for _, x := range a {
			s += x
		}
		return s
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range r {
				r[j] += a[i+j]
			}
		}
		s := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			s += a[i]
		}
		return s
	}
	h := n / 2
	h -= h % 8
	return pairwiseSum(a[:h]) + pairwiseSum(a[h:])
}

// round2 rounds to two decimals as numpy does: scale, round half to even,
// unscale.
func round2(x float64) float64 { return math.RoundToEven(x*100) / 100 }
