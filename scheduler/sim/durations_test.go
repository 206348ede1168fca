package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"babelfish.dev/babelfish/scheduler/core"
)

// timed is a task of gpus x milli arriving at created and running dur seconds.
func timed(name string, created, dur int64, gpus int, milli int64) Task {
	r := core.Request{CPUMilli: 1000, MemoryMiB: 1000, GPUs: gpus, GPUMilli: milli}
	if gpus == 0 {
		r.GPUMilli = 0
	}
	return Task{Name: name, Req: r, Timed: true, Created: created, Duration: dur}
}

func TestRunDurationsByHand(t *testing.T) {
	oneGPU := []core.NodeInfo{core.UniformNode("n0", 64000, 64000, "T4", 1)}
	twoGPU := []core.NodeInfo{core.UniformNode("n0", 64000, 64000, "T4", 2)}
	type want struct {
		delays, jcts   []float64 // by task, in the order given; NaN: never ran
		makespan, util float64
		neverRan       int
		maxQueue       int
	}
	tests := []struct {
		name   string
		nodes  []core.NodeInfo
		tasks  []Task
		scale  float64
		want   want
		checks func(t *testing.T, r *Replay)
	}{
		{
			// One GPU, three whole-GPU tasks: each waits for the one before.
			name:  "fifo on one gpu",
			nodes: oneGPU,
			tasks: []Task{timed("a", 0, 10, 1, 1000), timed("b", 1, 5, 1, 1000), timed("c", 2, 3, 1, 1000)},
			// a 0..10; b 10..15 (waits 9); c 15..18 (waits 13); always full.
			want: want{delays: []float64{0, 9, 13}, jcts: []float64{10, 14, 16}, makespan: 18, util: 100, maxQueue: 2},
		},
		{
			// Two GPUs: b needs both and waits for a; c fits beside a and
			// goes ahead of b (backfill).
			name:  "backfill past a blocked task",
			nodes: twoGPU,
			tasks: []Task{timed("a", 0, 10, 1, 1000), timed("b", 1, 5, 2, 1000), timed("c", 2, 4, 1, 1000)},
			// a 0..10; c 2..6; b 10..15. Allocation: 50% on 0..2 and
			// 6..10, 100% on 2..6 and 10..15: 12 GPU-s of 15 x 1 = 80%.
			want: want{delays: []float64{0, 9, 0}, jcts: []float64{10, 14, 4}, makespan: 15, util: 80, maxQueue: 1},
			checks: func(t *testing.T, r *Replay) {
				// Slices of 0.15 s: the first is half full, the last full.
				if r.UtilCurve[0] != 50 || r.UtilCurve[UtilBins-1] != 100 || r.UtilPeak != 100 {
					t.Errorf("util curve first %v last %v peak %v, want 50 100 100", r.UtilCurve[0], r.UtilCurve[UtilBins-1], r.UtilPeak)
				}
				if r.Waited != 1 {
					t.Errorf("waited %d, want 1", r.Waited)
				}
				// b (2 GPUs) waited 9 s; a and c (1 GPU each) did not.
				if r.QueueDelayGPU != 9*2000.0/4000 {
					t.Errorf("GPU-weighted delay %v, want 4.5", r.QueueDelayGPU)
				}
			},
		},
		{
			// A release and an arrival at the same instant: the release
			// comes first, so b does not wait.
			name:  "release before arrival",
			nodes: oneGPU,
			tasks: []Task{timed("a", 0, 5, 1, 1000), timed("b", 5, 5, 1, 1000)},
			want:  want{delays: []float64{0, 0}, jcts: []float64{5, 5}, makespan: 10, util: 100},
		},
		{
			// GPU sharing: two halves share the GPU, the third waits.
			name:  "sharing",
			nodes: oneGPU,
			tasks: []Task{timed("a", 0, 10, 1, 500), timed("b", 1, 10, 1, 500), timed("c", 2, 10, 1, 500)},
			// a 0..10, b 1..11, c 10..20 (waits 8). Allocation 50% on
			// 0..1, 100% on 1..11, 50% on 11..20: 15 of 20 = 75%.
			want: want{delays: []float64{0, 0, 8}, jcts: []float64{10, 10, 18}, makespan: 20, util: 75, maxQueue: 1},
		},
		{
			// A task bigger than any node never runs and is not queued.
			name:  "never runs",
			nodes: oneGPU,
			tasks: []Task{timed("a", 0, 4, 1, 1000), timed("big", 1, 4, 2, 1000), timed("c", 2, 4, 1, 1000)},
			want:  want{delays: []float64{0, math.NaN(), 2}, jcts: []float64{4, math.NaN(), 6}, makespan: 8, util: 100, neverRan: 1, maxQueue: 1},
			checks: func(t *testing.T, r *Replay) {
				if r.NeverRanGPU != 2000 {
					t.Errorf("never ran gpu milli %d, want 2000", r.NeverRanGPU)
				}
			},
		},
		{
			// CPU is a resource too: the CPU-only task takes the node's
			// CPU, so the GPU task waits though the GPU is free.
			name:  "cpu bound",
			nodes: []core.NodeInfo{core.UniformNode("n0", 1000, 64000, "T4", 1)},
			tasks: []Task{timed("cpu", 0, 6, 0, 0), timed("g", 1, 2, 1, 1000)},
			// cpu 0..6, g 6..8: the GPU is busy 2 s of 8.
			want: want{delays: []float64{0, 5}, jcts: []float64{6, 7}, makespan: 8, util: 25, maxQueue: 1},
		},
		{
			// The fifo case with arrivals 100x later and a time scale of
			// 100: the same run.
			name:  "time scale",
			nodes: oneGPU,
			tasks: []Task{timed("a", 0, 10, 1, 1000), timed("b", 100, 5, 1, 1000), timed("c", 200, 3, 1, 1000)},
			scale: 100,
			want:  want{delays: []float64{0, 9, 13}, jcts: []float64{10, 14, 16}, makespan: 18, util: 100, maxQueue: 2},
		},
	}
	for _, tc := range tests {
		for _, policy := range core.PolicyNames() {
			t.Run(tc.name+"/"+policy, func(t *testing.T) {
				res, err := Run(context.Background(), Config{Nodes: tc.nodes, Tasks: tc.tasks, Policy: policy, Seed: 42, Durations: true, TimeScale: tc.scale})
				if err != nil {
					t.Fatal(err)
				}
				r := res.Replay
				if r == nil {
					t.Fatal("no replay figures")
				}
				var delays, jcts []float64
				for i := range tc.want.delays {
					if !math.IsNaN(tc.want.delays[i]) {
						delays = append(delays, tc.want.delays[i])
						jcts = append(jcts, tc.want.jcts[i])
					}
				}
				if got, want := r.QueueDelay, summarise(delays); got != want {
					t.Errorf("queue delay %+v, want %+v", got, want)
				}
				if got, want := r.JCT, summarise(jcts); got != want {
					t.Errorf("jct %+v, want %+v", got, want)
				}
				if r.Makespan != tc.want.makespan || r.UtilMean != tc.want.util {
					t.Errorf("makespan %v util %v, want %v %v", r.Makespan, r.UtilMean, tc.want.makespan, tc.want.util)
				}
				if r.NeverRan != tc.want.neverRan || res.Pending != tc.want.neverRan || r.Ran != len(delays) || res.Placed != r.Ran {
					t.Errorf("ran %d (placed %d), never ran %d (pending %d); want %d, %d", r.Ran, res.Placed, r.NeverRan, res.Pending, len(delays), tc.want.neverRan)
				}
				if r.MaxQueue != tc.want.maxQueue {
					t.Errorf("max queue %d, want %d", r.MaxQueue, tc.want.maxQueue)
				}
				if len(r.UtilCurve) != UtilBins {
					t.Errorf("util curve has %d slices, want %d", len(r.UtilCurve), UtilBins)
				}
				if tc.checks != nil {
					tc.checks(t, r)
				}
			})
		}
	}
}

func TestSummarise(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want Dist
	}{
		{"empty", nil, Dist{}},
		{"one", []float64{7}, Dist{Mean: 7, P50: 7, P95: 7, P99: 7, Max: 7}},
		// Nearest rank over 1..100: Pq is q itself.
		{"1..100", seq(100), Dist{Mean: 50.5, P50: 50, P95: 95, P99: 99, Max: 100}},
		// Over 1..10: P50 is the 5th, P95 and P99 the 10th.
		{"1..10 reversed", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Dist{Mean: 5.5, P50: 5, P95: 10, P99: 10, Max: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarise(tc.xs); got != tc.want {
				t.Fatalf("summarise = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

func TestReadTaskTimes(t *testing.T) {
	const head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
	tests := []struct {
		name        string
		csv         string
		want        Task
		wantErr     string
		unscheduled bool
	}{
		{"scheduled", head + "p,1,1,1,1000,,LS,Running,100,160,110\n", Task{Timed: true, Created: 100, Duration: 50}, "", false},
		{"never scheduled: lifetime", head + "p,1,1,1,1000,,BE,Pending,100,160,\n", Task{Timed: true, Created: 100, Duration: 60, Unscheduled: true}, "", true},
		{"no time columns", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,1000\n", Task{}, "", false},
		{"deletion missing", head + "p,1,1,1,1000,,LS,Running,100,,110\n", Task{}, "both are required", false},
		{"scheduled before creation", head + "p,1,1,1,1000,,LS,Running,100,160,90\n", Task{}, "scheduled_time 90: before creation_time 100", false},
		{"deleted before start", head + "p,1,1,1,1000,,LS,Running,100,105,110\n", Task{}, "deletion_time 105: before the task started at 110", false},
		{"bad time", head + "p,1,1,1,1000,,LS,Running,soon,160,110\n", Task{}, `creation_time "soon": want an integer`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tasks, err := ReadTasks(strings.NewReader(tc.csv))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadTasks = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(tasks) != 1 {
				t.Fatalf("ReadTasks = %v, %v", tasks, err)
			}
			got := tasks[0]
			if got.Timed != tc.want.Timed || got.Created != tc.want.Created || got.Duration != tc.want.Duration || got.Unscheduled != tc.unscheduled {
				t.Fatalf("times %+v, want %+v", got, tc.want)
			}
		})
	}
}

// withTimes gives synthetic tasks arrival times and durations.
func withTimes(tasks []Task, created func(i int) int64, dur func(i int) int64) []Task {
	out := make([]Task, len(tasks))
	for i, t := range tasks {
		t.Timed, t.Created, t.Duration = true, created(i), dur(i)
		out[i] = t
	}
	return out
}

// TestDurationsMatchArrivals: when everything arrives at once and runs for
// ages, the first pass walks the queue in the seeded order, which is the
// artifact's experiment: after the arrivals, the same tasks are placed, and
// exactly those the artifact leaves pending wait.
func TestDurationsMatchArrivals(t *testing.T) {
	nodes := synthNodes(16)
	tasks := withTimes(synthTasks(60), func(int) int64 { return 0 }, func(int) int64 { return 1 << 40 })
	for _, policy := range core.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			cfg := Config{Nodes: nodes, Tasks: tasks, Policy: policy, Seed: 7, Tune: 1.3}
			a, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Durations = true
			d, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if a.Pending == 0 {
				t.Fatal("the case must leave tasks pending to mean anything")
			}
			// Allocation and fragmentation are taken after the last arrival.
			if d.AllocatedGPU != a.AllocatedGPU || d.FragGPUMilli != a.FragGPUMilli || d.Tasks != a.Tasks {
				t.Fatalf("durations: alloc %d frag %v of %d tasks; arrivals: alloc %d frag %v of %d",
					d.AllocatedGPU, d.FragGPUMilli, d.Tasks, a.AllocatedGPU, a.FragGPUMilli, a.Tasks)
			}
			r := d.Replay
			if r.Waited != a.Pending || r.Ran != a.Tasks || r.NeverRan != 0 || r.MaxQueue != a.Pending {
				t.Fatalf("waited %d, max queue %d (arrivals pending %d); ran %d of %d, never ran %d", r.Waited, r.MaxQueue, a.Pending, r.Ran, a.Tasks, r.NeverRan)
			}
		})
	}
}

func TestRunDurationsDeterministic(t *testing.T) {
	nodes := synthNodes(8)
	tasks := withTimes(synthTasks(80), func(i int) int64 { return int64(i * 37 % 50) }, func(i int) int64 { return int64(10 + i*13%90) })
	run := func(seed int64) *Result {
		r, err := Run(context.Background(), Config{Nodes: nodes, Tasks: tasks, Policy: "babelfish", Seed: seed, Tune: 1.3, Durations: true, TimeScale: 2})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := run(42), run(42)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatal("same seed, different results")
	}
	r := a.Replay
	if r.Waited == 0 || r.QueueDelay.P99 <= 0 {
		t.Fatalf("the case must queue to mean anything: %+v", r)
	}
	if r.Ran+r.NeverRan != a.Tasks {
		t.Fatalf("ran %d + never ran %d != %d tasks", r.Ran, r.NeverRan, a.Tasks)
	}
	// JCT is delay plus duration, so it is never below the delay.
	if r.JCT.Mean < r.QueueDelay.Mean || r.JCT.Max < r.QueueDelay.Max || r.UtilPeak > 100 || r.UtilMean <= 0 || r.UtilMean > r.UtilPeak {
		t.Fatalf("inconsistent figures: %+v", r)
	}
	if c := run(43); fmt.Sprint(c.Replay.QueueDelay) == fmt.Sprint(r.QueueDelay) && c.Replay.Makespan == r.Makespan {
		t.Fatal("seeds 42 and 43 gave the same queueing: the seed has no effect")
	}
}

func TestRunDurationsRejects(t *testing.T) {
	nodes := synthNodes(1)
	untimed := synthTasks(3)
	timedTasks := withTimes(untimed, func(int) int64 { return 0 }, func(int) int64 { return 1 })
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"untimed task", Config{Nodes: nodes, Tasks: untimed, Policy: "fgd", Durations: true}, "sim task t000: no creation_time and deletion_time"},
		{"time scale without durations", Config{Nodes: nodes, Tasks: timedTasks, Policy: "fgd", TimeScale: 2}, "only applies when durations are replayed"},
		{"negative time scale", Config{Nodes: nodes, Tasks: timedTasks, Policy: "fgd", Durations: true, TimeScale: -1}, "sim time_scale -1"},
		{"infinite time scale", Config{Nodes: nodes, Tasks: timedTasks, Policy: "fgd", Durations: true, TimeScale: math.Inf(1)}, "sim time_scale +Inf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestReplayDurationsTrace replays the default openb workload with its
// durations, arrivals compressed, and checks the books balance.
func TestReplayDurationsTrace(t *testing.T) {
	dir := tracesDir(t)
	nodes, err := ReadNodesFile(filepath.Join(dir, "openb_node_list_gpu_node.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := ReadTasksFile(filepath.Join(dir, "openb_pod_list_default.csv"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Config{Nodes: nodes, Tasks: tasks, Policy: "bestfit", Seed: 42, Tune: 1.3, Durations: true, TimeScale: 30000})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Replay
	if r.Ran+r.NeverRan != res.Tasks || r.Ran < res.Tasks*99/100 {
		t.Fatalf("ran %d + never ran %d of %d tasks", r.Ran, r.NeverRan, res.Tasks)
	}
	if r.Waited == 0 || r.QueueDelay.P99 <= 0 || r.UtilPeak < 90 {
		t.Fatalf("130%% of the cluster arriving within minutes must fill it and queue: %+v", r)
	}
	if r.FromCreation == 0 {
		t.Fatal("the default trace has never-scheduled tasks; none used their lifetime")
	}
	// The longest task in the trace runs 12,537,496 s; the makespan holds it.
	if r.Makespan < 12537496 || r.JCT.Max < 12537496 {
		t.Fatalf("makespan %v, max JCT %v: shorter than the longest task", r.Makespan, r.JCT.Max)
	}
}

// naiveDurations is the replay without its shortcuts: at every instant,
// release what ended, queue what arrived, then try every queued task.
func naiveDurations(t *testing.T, cfg Config) (delays, jcts []float64) {
	t.Helper()
	p, err := prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tasks := p.tasks
	for i := len(tasks) - p.copies; i < len(tasks); i++ {
		tasks[i].Created = p.byName[p.rng.Intn(len(p.byName))].Created
	}
	type run struct {
		end float64
		b   core.Binding
	}
	var running []run
	var queue []int
	done := make([]bool, len(tasks))
	arrive := func(i int) float64 { return float64(tasks[i].Created) / cfg.TimeScale }
	for {
		now := math.Inf(1)
		for i := range tasks {
			if !done[i] && !slices.Contains(queue, i) {
				now = min(now, arrive(i))
			}
		}
		for _, r := range running {
			now = min(now, r.end)
		}
		if math.IsInf(now, 1) {
			return delays, jcts
		}
		kept := running[:0]
		for _, r := range running {
			if r.end <= now {
				if err := p.st.Release(r.b); err != nil {
					t.Fatal(err)
				}
			} else {
				kept = append(kept, r)
			}
		}
		running = kept
		var fresh []int
		for i := range tasks {
			if !done[i] && !slices.Contains(queue, i) && arrive(i) <= now {
				fresh = append(fresh, i)
			}
		}
		// Same instant: the seeded order (the index) decides.
		queue = append(queue, fresh...)
		var still []int
		for _, i := range queue {
			c, ok := p.placer.Best(p.st, &tasks[i].Req, nil)
			if !ok {
				still = append(still, i)
				continue
			}
			b := p.st.Bind(tasks[i].Name, 0, c.Node, &tasks[i].Req, c.GPUs)
			if err := p.st.Apply(b); err != nil {
				t.Fatal(err)
			}
			done[i] = true
			running = append(running, run{now + float64(tasks[i].Duration), b})
			delays = append(delays, now-arrive(i))
			jcts = append(jcts, now-arrive(i)+float64(tasks[i].Duration))
		}
		queue = still
		if len(running) == 0 && len(queue) > 0 {
			// Nothing runs: the rest wait for arrivals or never run.
			for _, i := range queue {
				done[i] = true
			}
			queue = nil
		}
	}
}

// TestDurationsMatchNaive checks the replay's shortcuts (only new arrivals
// after a pass without releases, only released nodes for a task that
// failed, a failed shape skipped for the rest of a pass) change nothing.
func TestDurationsMatchNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	models := []string{"T4", "V100"}
	var nodes []core.NodeInfo
	for i := range 12 {
		nodes = append(nodes, core.UniformNode(fmt.Sprintf("n%02d", i), int64(16000+rng.Intn(4)*16000), 1<<20, models[i%2], 1+rng.Intn(8)))
	}
	var tasks []Task
	for i := range 150 {
		r := core.Request{CPUMilli: int64(1000 + rng.Intn(8)*2000), MemoryMiB: 1000}
		switch k := rng.Intn(10); {
		case k < 4:
			r.GPUs, r.GPUMilli = 1, int64(100*(1+rng.Intn(9)))
		case k < 8:
			r.GPUs, r.GPUMilli = 1+rng.Intn(4), 1000
		case k < 9:
			r.GPUs, r.GPUMilli, r.Models = 1, 1000, []string{"V100"}
		}
		tasks = append(tasks, Task{Name: fmt.Sprintf("t%03d", i), Req: r, Timed: true, Created: int64(rng.Intn(400)), Duration: int64(rng.Intn(120))})
	}
	for _, policy := range core.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			cfg := Config{Nodes: nodes, Tasks: tasks, Policy: policy, Seed: 11, Tune: 3, Durations: true, TimeScale: 8}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			delays, jcts := naiveDurations(t, cfg)
			t.Logf("ran %d, waited %d, passes %d, p99 delay %v", res.Replay.Ran, res.Replay.Waited, res.Replay.Passes, res.Replay.QueueDelay.P99)
			if res.Replay.Waited == 0 {
				t.Fatalf("the case must queue to mean anything: %+v", res.Replay)
			}
			if got, want := res.Replay.QueueDelay, summarise(delays); got != want {
				t.Errorf("queue delay %+v, naive %+v", got, want)
			}
			if got, want := res.Replay.JCT, summarise(jcts); got != want {
				t.Errorf("jct %+v, naive %+v", got, want)
			}
			if res.Replay.Ran != len(delays) {
				t.Errorf("ran %d, naive %d", res.Replay.Ran, len(delays))
			}
		})
	}
}
