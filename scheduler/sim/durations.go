package sim

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"

	"babelfish.dev/babelfish/scheduler/core"
)

// UtilBins is the number of equal slices of the makespan in Replay.UtilCurve.
const UtilBins = 100

// Dist summarises a distribution of times in seconds. Percentiles are by
// nearest rank: Pq is the ceil(q/100 x n)-th smallest value.
type Dist struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Replay is what a replay with durations reports. Times are seconds on the
// replay's clock (trace arrival times divided by TimeScale).
type Replay struct {
	TimeScale float64 `json:"time_scale"`
	// QueueDelay is start minus arrival, JCT end minus arrival, over the
	// tasks that ran.
	QueueDelay Dist `json:"queue_delay_s"`
	JCT        Dist `json:"jct_s"`
	// QueueDelayGPU is the queueing delay weighted by the task's GPU milli:
	// the per-task mean rewards running many small tasks while a few big
	// ones starve; this one counts the GPU-time that waited.
	QueueDelayGPU float64 `json:"queue_delay_gpu_weighted_mean_s"`
	// Makespan runs from the first arrival to the last task's end.
	Makespan float64 `json:"makespan_s"`
	Ran      int     `json:"ran"`
	Waited   int     `json:"waited"` // tasks that ran after a queueing delay > 0
	// NeverRan counts the tasks no node of the idle cluster can host, so
	// they would wait forever; they are left out of the delay and JCT.
	NeverRan    int   `json:"never_ran"`
	NeverRanGPU int64 `json:"never_ran_gpu_milli"`
	// FromCreation counts tasks the trace never scheduled, whose duration
	// is their lifetime (deletion_time minus creation_time).
	FromCreation int `json:"durations_from_creation"`
	MaxQueue     int `json:"max_queue"` // the most tasks waiting after a pass
	// UtilMean is the time-weighted GPU allocation (percent of the cluster's
	// GPU milli) over the makespan; UtilCurve the same over each of
	// UtilBins equal slices of it; UtilPeak the highest allocation reached.
	UtilMean  float64   `json:"util_mean_percent"`
	UtilPeak  float64   `json:"util_peak_percent"`
	UtilCurve []float64 `json:"util_curve"`
	// Passes counts scheduling passes over the queue.
	Passes int `json:"passes"`
}

// runDurations replays time. Tasks arrive at creation_time / TimeScale (a
// tuning copy arrives at the creation_time of a trace task drawn by the
// seed, so copies follow the trace's arrival pattern), run for their trace
// duration and then free what they held. Waiting follows the core's queue
// semantics (core.Schedule at equal priority): at every instant something
// arrives or ends, the ended tasks are released first, then one pass walks
// the queue oldest first (arrival time, then the seeded order) and places
// every task that fits now, skipping those that do not: FIFO with backfill,
// no reservation. A pass with no release tries only the new arrivals, as
// nothing older can fit where it did not before.
//
// The allocation curve samples the allocation after each arrival's pass;
// the end-of-run fragmentation fields are taken after the last arrival's
// pass (at the end everything has left).
func (p *prepared) runDurations(ctx context.Context) (*Result, error) {
	scale := p.cfg.TimeScale
	if scale == 0 {
		scale = 1
	}
	tasks, st, placer, res := p.tasks, p.st, p.placer, p.res
	n := len(tasks)
	// Tuning copies were drawn after the node ranks, so the published
	// task order and tie-breaks are unchanged; their arrival times come last.
	for i := n - p.copies; i < n; i++ {
		tasks[i].Created = p.byName[p.rng.Intn(len(p.byName))].Created
	}
	arrive := make([]float64, n)
	order := make([]int, n)
	shapes := make([]core.Shape, n)
	for i := range tasks {
		arrive[i] = float64(tasks[i].Created) / scale
		order[i] = i
		shapes[i] = tasks[i].Req.Shape()
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case arrive[a] < arrive[b]:
			return -1
		case arrive[a] > arrive[b]:
			return 1
		}
		return a - b
	})

	// Tasks no node of the idle cluster can host never run: keep them out
	// of the queue, where they would be retried forever.
	idle, err := core.NewState(p.cfg.Nodes)
	if err != nil {
		return nil, err
	}
	idlePlacer := core.NewPlacer(p.scorer)
	hostable := map[core.Shape]bool{}
	canHost := func(i int) bool {
		ok, seen := hostable[shapes[i]]
		if !seen {
			_, ok = idlePlacer.Best(idle, &tasks[i].Req, nil)
			hostable[shapes[i]] = ok
		}
		return ok
	}

	// A queued task that failed when relLog had k entries can since fit
	// only on a node released after that: every other node has only filled
	// up. mayFit checks those few nodes before the full placement.
	const maxCheck = 64
	filters := core.DefaultFilters()
	var relLog []int // node positions, in release order
	tried := make([]int, n)
	for i := range tried {
		tried[i] = -1
	}
	mayFit := func(i int) bool {
		k := tried[i]
		if k < 0 || len(relLog)-k > maxCheck {
			return true
		}
		for _, pos := range relLog[k:] {
			nd := st.At(pos)
			fits := true
			for _, f := range filters {
				if !f.Feasible(nd, &tasks[i].Req) {
					fits = false
					break
				}
			}
			if fits {
				return true
			}
		}
		return false
	}
	// Shapes interned, for the per-pass memo of shapes that failed.
	sid := make([]int, n)
	ids := map[core.Shape]int{}
	for i := range shapes {
		id, ok := ids[shapes[i]]
		if !ok {
			id = len(ids)
			ids[shapes[i]] = id
		}
		sid[i] = id
	}
	failedIn := make([]int, len(ids)) // the pass a shape last failed in
	var kept []int

	rep := &Replay{TimeScale: scale}
	res.Replay = rep
	start := make([]float64, n)
	started := make([]bool, n)
	var (
		ends    endHeap
		queue   []int
		seq     int
		util    utilTrack
		bins    = newBinner()
		arrived []int64 // cumulative arrived GPU milli of this instant's arrivals
	)
	fragAt100 := math.NaN()
	next := 0 // into order
	t0 := arrive[order[0]]
	util.start(t0)
	for events := 0; ; events++ {
		if events%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		now := math.Inf(1)
		if next < n {
			now = arrive[order[next]]
		}
		if len(ends) > 0 && ends[0].end < now {
			now = ends[0].end
		}
		if math.IsInf(now, 1) {
			break // nothing arrives or runs: whatever still waits never runs
		}
		util.advance(now, st.AllocatedGPUMilli())

		released := false
		for len(ends) > 0 && ends[0].end <= now {
			r := heap.Pop(&ends).(runningTask)
			if err := st.Release(r.b); err != nil {
				return nil, fmt.Errorf("sim task %s: %w", tasks[r.task].Name, err)
			}
			relLog = append(relLog, st.Node(r.b.Node).Pos())
			released = true
		}
		from := len(queue) // older tasks failed on a state no emptier than now
		if released {
			from = 0
		}
		arrived = arrived[:0]
		for next < n && arrive[order[next]] <= now {
			i := order[next]
			next++
			res.ArrivedGPU += tasks[i].Req.TotalGPUMilli()
			arrived = append(arrived, res.ArrivedGPU)
			if tasks[i].Unscheduled {
				rep.FromCreation++
			}
			if !canHost(i) {
				rep.NeverRan++
				rep.NeverRanGPU += tasks[i].Req.TotalGPUMilli()
				continue
			}
			queue = append(queue, i)
		}

		if from < len(queue) {
			rep.Passes++
			for k, i := range queue {
				if k < from {
					kept = append(kept, i)
					continue
				}
				if failedIn[sid[i]] == rep.Passes {
					tried[i] = len(relLog)
					kept = append(kept, i)
					continue
				}
				t := &tasks[i]
				var c core.Choice
				ok := t.Req.TotalGPUMilli() <= st.CapacityGPUMilli()-st.AllocatedGPUMilli() && mayFit(i)
				if ok {
					res.PlacementsRun++
					c, ok = placer.Best(st, &t.Req, nil)
				}
				if !ok {
					// Resources only shrink during a pass, so a shape
					// that failed once fails for the rest of it.
					failedIn[sid[i]] = rep.Passes
					tried[i] = len(relLog)
					kept = append(kept, i)
					continue
				}
				b := st.Bind(t.Name, 0, c.Node, &t.Req, c.GPUs)
				if err := st.Apply(b); err != nil {
					return nil, fmt.Errorf("sim task %s: %w", t.Name, err)
				}
				start[i], started[i] = now, true
				heap.Push(&ends, runningTask{end: now + float64(t.Duration), seq: seq, task: i, b: b})
				seq++
				rep.Ran++
				if now > arrive[i] {
					rep.Waited++
				}
			}
			queue, kept = kept, queue[:0]
		}
		rep.MaxQueue = max(rep.MaxQueue, len(queue))
		alloc := st.AllocatedGPUMilli()
		rep.UtilPeak = max(rep.UtilPeak, 100*float64(alloc)/p.capacity)
		for _, a := range arrived {
			bins.add(a, alloc, res.GPUs)
		}
		if len(arrived) > 0 {
			if math.IsNaN(fragAt100) && float64(res.ArrivedGPU) >= p.capacity {
				fragAt100, _ = p.measure.ClusterFrag(st)
			}
			if next == n {
				p.recordFrag(fragAt100)
			}
		}
	}
	for _, i := range queue {
		rep.NeverRan++
		rep.NeverRanGPU += tasks[i].Req.TotalGPUMilli()
	}
	res.Placed, res.Pending, res.PendingGPU = rep.Ran, rep.NeverRan, rep.NeverRanGPU
	res.Curve = bins.curve()
	res.AllocAt100, res.AllocAt130 = res.Curve[100], res.Curve[130]

	var delays, jcts []float64
	var waitGPU, gpu float64
	for i := range tasks {
		if started[i] {
			d := start[i] - arrive[i]
			delays = append(delays, d)
			jcts = append(jcts, d+float64(tasks[i].Duration))
			g := float64(tasks[i].Req.TotalGPUMilli())
			waitGPU += d * g
			gpu += g
		}
	}
	if gpu > 0 {
		rep.QueueDelayGPU = waitGPU / gpu
	}
	rep.QueueDelay, rep.JCT = summarise(delays), summarise(jcts)
	rep.Makespan = util.last - t0
	rep.UtilMean, rep.UtilCurve = util.curve(p.capacity)
	rep.UtilPeak = round2(rep.UtilPeak)
	return res, nil
}

// summarise computes a Dist of xs (which it sorts); zero when empty.
func summarise(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	slices.Sort(xs)
	var sum float64
	for _, x := range xs {
		sum += x
	}
	rank := func(q float64) float64 {
		k := int(math.Ceil(q / 100 * float64(len(xs))))
		return xs[min(max(k, 1), len(xs))-1]
	}
	return Dist{Mean: sum / float64(len(xs)), P50: rank(50), P95: rank(95), P99: rank(99), Max: xs[len(xs)-1]}
}

// runningTask is a placed task waiting for its end.
type runningTask struct {
	end  float64
	seq  int // start order: equal ends release in the order they started
	task int
	b    core.Binding
}

type endHeap []runningTask

func (h endHeap) Len() int { return len(h) }
func (h endHeap) Less(i, j int) bool {
	if h[i].end != h[j].end {
		return h[i].end < h[j].end
	}
	return h[i].seq < h[j].seq
}
func (h endHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)   { *h = append(*h, x.(runningTask)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// utilTrack integrates the allocation, a step function of time.
type utilTrack struct {
	first, last float64
	segs        []utilSeg
}

type utilSeg struct {
	from, to float64
	alloc    int64
}

func (u *utilTrack) start(t float64) { u.first, u.last = t, t }

// advance closes the step from the last event to now at the allocation
// that held over it.
func (u *utilTrack) advance(now float64, alloc int64) {
	if now > u.last && alloc > 0 {
		u.segs = append(u.segs, utilSeg{u.last, now, alloc})
	}
	u.last = now
}

// curve returns the time-weighted mean allocation (percent of capacity)
// over [first, last] and over each of UtilBins equal slices of it.
func (u *utilTrack) curve(capacity float64) (float64, []float64) {
	span := u.last - u.first
	out := make([]float64, UtilBins)
	if span <= 0 {
		return 0, out
	}
	w := span / UtilBins
	var area float64
	for _, s := range u.segs {
		a := float64(s.alloc)
		area += a * (s.to - s.from)
		lo := min(int((s.from-u.first)/w), UtilBins-1)
		hi := min(int((s.to-u.first)/w), UtilBins-1)
		for b := lo; b <= hi; b++ {
			bs, be := u.first+float64(b)*w, u.first+float64(b+1)*w
			if b == UtilBins-1 {
				be = u.last
			}
			if ov := min(be, s.to) - max(bs, s.from); ov > 0 {
				out[b] += a * ov
			}
		}
	}
	for b := range out {
		out[b] = round2(100 * out[b] / w / capacity)
	}
	return round2(100 * area / span / capacity), out
}
