package core

import (
	"math"
	"math/rand"
	"strings"
	"testing"
)

// used returns a node with the given GPU milli already in use per GPU.
func used(t *testing.T, st *State, node string, milli ...int64) {
	t.Helper()
	for i, m := range milli {
		if m == 0 {
			continue
		}
		if err := st.Apply(Binding{Job: "pre", Node: node, GPUs: []GPUShare{{Index: i, Milli: m}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustWorkload(t *testing.T, types ...TaskType) *Workload {
	t.Helper()
	w, err := NewWorkload(types)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

type placeCase struct {
	name     string
	policy   string
	nodes    []NodeInfo
	inUse    map[string][]int64
	req      Request
	wantNode string
	wantGPU  int // device index, -1 for none
	wantErr  string
}

func TestPlacerPolicies(t *testing.T) {
	w300 := mustWorkload(t, TaskType{GPUs: 1, GPUMilli: 300, Weight: 1})
	unhealthy := UniformNode("sick", 8000, 100, "T4", 2)
	unhealthy.GPUs[0].Healthy = false
	tests := []placeCase{
		{
			name: "bestfit takes the fullest GPU", policy: "bestfit",
			nodes: []NodeInfo{UniformNode("n1", 8000, 100, "T4", 1), UniformNode("n2", 8000, 100, "T4", 1)},
			inUse: map[string][]int64{"n1": {500}, "n2": {700}},
			req:   Request{CPUMilli: 100, GPUs: 1, GPUMilli: 200}, wantNode: "n2", wantGPU: 0,
		},
		{
			// n2 would keep 100 milli no 300-milli task can use; n1 keeps 300.
			name: "fgd avoids the sliver bestfit leaves", policy: "fgd",
			nodes: []NodeInfo{UniformNode("n1", 8000, 100, "T4", 1), UniformNode("n2", 8000, 100, "T4", 1)},
			inUse: map[string][]int64{"n1": {500}, "n2": {700}},
			req:   Request{CPUMilli: 100, GPUs: 1, GPUMilli: 200}, wantNode: "n1", wantGPU: 0,
		},
		{
			name: "babelfish avoids the sliver too", policy: "babelfish",
			nodes: []NodeInfo{UniformNode("n1", 8000, 100, "T4", 1), UniformNode("n2", 8000, 100, "T4", 1)},
			inUse: map[string][]int64{"n1": {500}, "n2": {700}},
			req:   Request{CPUMilli: 100, GPUs: 1, GPUMilli: 200}, wantNode: "n1", wantGPU: 0,
		},
		{
			name: "spread takes the emptiest node", policy: "spread",
			nodes: []NodeInfo{UniformNode("busy", 8000, 100, "T4", 2), UniformNode("idle", 8000, 100, "T4", 2)},
			inUse: map[string][]int64{"busy": {500}},
			req:   Request{CPUMilli: 100, GPUs: 1, GPUMilli: 200}, wantNode: "idle", wantGPU: 0,
		},
		{
			name: "model constraint", policy: "bestfit",
			nodes: []NodeInfo{UniformNode("t4", 8000, 100, "T4", 1), UniformNode("a100", 8000, 100, "A100", 1)},
			req:   Request{GPUs: 1, GPUMilli: 1000, Models: []string{"A100"}}, wantNode: "a100", wantGPU: 0,
		},
		{
			name: "no model fits", policy: "fgd",
			nodes:   []NodeInfo{UniformNode("t4", 8000, 100, "T4", 1)},
			req:     Request{GPUs: 1, GPUMilli: 1000, Models: []string{"H100"}},
			wantErr: "0/1 nodes fit (1 gpu-model)",
		},
		{
			name: "cpu-only task takes no GPU", policy: "babelfish",
			nodes: []NodeInfo{UniformNode("n", 8000, 100, "T4", 1)},
			req:   Request{CPUMilli: 1000}, wantNode: "n", wantGPU: -1,
		},
		{
			name: "not enough memory", policy: "spread",
			nodes:   []NodeInfo{UniformNode("n", 8000, 100, "T4", 1)},
			req:     Request{MemoryMiB: 101},
			wantErr: "1 cpu-or-memory",
		},
		{
			name: "unhealthy GPU never used", policy: "bestfit",
			nodes: []NodeInfo{unhealthy},
			req:   Request{GPUs: 1, GPUMilli: 100}, wantNode: "sick", wantGPU: 1,
		},
		{
			name: "two GPUs wanted, one healthy", policy: "fgd",
			nodes:   []NodeInfo{unhealthy},
			req:     Request{GPUs: 2, GPUMilli: 1000},
			wantErr: "1 gpu-free",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewState(tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			for n, m := range tc.inUse {
				used(t, st, n, m...)
			}
			sc, err := NewScorer(tc.policy, w300)
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewPlacer(sc).Place(st, "job", 0, &tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Place = %+v, %v; want error %q", b, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			gpu := -1
			if len(b.GPUs) > 0 {
				gpu = b.GPUs[0].Index
			}
			if b.Node != tc.wantNode || gpu != tc.wantGPU {
				t.Fatalf("placed on %s gpu %d, want %s gpu %d", b.Node, gpu, tc.wantNode, tc.wantGPU)
			}
		})
	}
}

func TestPlacerCacheSeesChanges(t *testing.T) {
	st, err := NewState([]NodeInfo{UniformNode("n", 8000, 100, "T4", 1)})
	if err != nil {
		t.Fatal(err)
	}
	w := mustWorkload(t, TaskType{GPUs: 1, GPUMilli: 1000, Weight: 1})
	for _, policy := range PolicyNames() {
		sc, err := NewScorer(policy, w)
		if err != nil {
			t.Fatal(err)
		}
		p := NewPlacer(sc)
		req := Request{GPUs: 1, GPUMilli: 1000}
		b, err := p.Place(st, "a", 0, &req)
		if err != nil {
			t.Fatalf("%s: first placement: %v", policy, err)
		}
		if _, err := p.Place(st, "b", 0, &req); err == nil {
			t.Fatalf("%s: second placement on a full node succeeded: stale cache", policy)
		}
		if err := st.Release(b); err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Best(st, &req, nil); !ok {
			t.Fatalf("%s: node freed but placer still sees it full", policy)
		}
	}
}

func TestTieBreaks(t *testing.T) {
	nodes := []NodeInfo{UniformNode("a", 8000, 100, "T4", 1), UniformNode("b", 8000, 100, "T4", 1), UniformNode("c", 8000, 100, "T4", 1)}
	req := Request{GPUs: 1, GPUMilli: 1000}
	tests := []struct {
		name string
		opts []PlacerOption
		want string
	}{
		{"first position by default", nil, "a"},
		{"node order", []PlacerOption{WithNodeOrder([]int{2, 0, 1})}, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewState(nodes)
			if err != nil {
				t.Fatal(err)
			}
			c, ok := NewPlacer(BestFit{}, tc.opts...).Best(st, &req, nil)
			if !ok || c.Node.Info.Name != tc.want {
				t.Fatalf("Best = %v, %v; want %s", c.Node.Info.Name, ok, tc.want)
			}
		})
	}
	// Random ties reach every tied node.
	st, err := NewState(nodes)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlacer(BestFit{}, WithRand(rand.New(rand.NewSource(1))))
	seen := map[string]bool{}
	for range 200 {
		c, _ := p.Best(st, &req, nil)
		seen[c.Node.Info.Name] = true
	}
	if len(seen) != 3 {
		t.Fatalf("random ties reached %v, want all three nodes", seen)
	}
}

func TestNodeFrag(t *testing.T) {
	w := mustWorkload(t,
		TaskType{CPUMilli: 1000, GPUs: 1, GPUMilli: 810, Weight: 1},
		TaskType{CPUMilli: 4000, GPUs: 1, GPUMilli: 1000, Weight: 1},
		TaskType{CPUMilli: 1000, Weight: 2}, // CPU-only: every free GPU milli is lost to it
		TaskType{GPUs: 1, GPUMilli: 1000, Models: []string{"A100"}, Weight: 0},
	)
	tests := []struct {
		name    string
		cpuFree int64
		inUse   []int64
		model   string
		want    float64
	}{
		// 0.5*1190 (CPU-only) + 0.25*190 (810 fits) + 0.25*190 (1000 fits)
		{"both GPU types fit", 8000, []int64{0, 810}, "T4", 595 + 47.5 + 47.5},
		// The 1000-milli type lacks CPU: all 1190 free milli are lost to it.
		{"cpu short for one type", 2000, []int64{0, 810}, "T4", 595 + 47.5 + 297.5},
		{"no free gpu, no fragmentation", 8000, []int64{1000, 1000}, "T4", 0},
		// Neither GPU type fits a 500-free GPU.
		{"all slivers", 8000, []int64{500, 1000}, "T4", 250 + 125 + 125},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewState([]NodeInfo{UniformNode("n", 8000, 100, tc.model, 2)})
			if err != nil {
				t.Fatal(err)
			}
			used(t, st, "n", tc.inUse...)
			n := st.Node("n")
			if tc.cpuFree < n.CPUFree {
				if err := st.Apply(Binding{Job: "cpu", Node: "n", CPUMilli: n.CPUFree - tc.cpuFree}); err != nil {
					t.Fatal(err)
				}
			}
			if got := w.NodeFrag(n); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("NodeFrag = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWorkloadFromRequests(t *testing.T) {
	a := Request{CPUMilli: 1000, GPUs: 1, GPUMilli: 500}
	b := Request{CPUMilli: 2000, GPUs: 1, GPUMilli: 1000}
	c := Request{CPUMilli: 1000}
	var reqs []Request
	for range 6 {
		reqs = append(reqs, a)
	}
	for range 3 {
		reqs = append(reqs, b)
	}
	reqs = append(reqs, c)
	tests := []struct {
		coverage float64
		want     []float64
		wantErr  string
	}{
		{0.6, []float64{1}, ""},
		{0.9, []float64{6.0 / 9, 3.0 / 9}, ""},
		{1, []float64{0.6, 0.3, 0.1}, ""},
		{0, nil, "coverage 0"},
		{1.5, nil, "coverage 1.5"},
	}
	for _, tc := range tests {
		w, err := WorkloadFromRequests(reqs, tc.coverage)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("coverage %v: err %v, want %q", tc.coverage, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Types) != len(tc.want) {
			t.Fatalf("coverage %v: %d types, want %d", tc.coverage, len(w.Types), len(tc.want))
		}
		for i, x := range tc.want {
			if math.Abs(w.Types[i].Weight-x) > 1e-9 {
				t.Fatalf("coverage %v: type %d weight %v, want %v", tc.coverage, i, w.Types[i].Weight, x)
			}
		}
	}
	if _, err := WorkloadFromRequests(nil, 0.9); err == nil {
		t.Fatal("no requests must be an error")
	}
}

func TestEstimateWorkloadKeepsScarceTypes(t *testing.T) {
	big := UniformNode("big", 128000, 1, "G3", 8)
	var nodes []NodeInfo
	for range 19 {
		nodes = append(nodes, UniformNode("n", 96000, 1, "G2", 8))
	}
	nodes = append(nodes, big)
	var reqs []Request
	for range 99 {
		reqs = append(reqs, Request{CPUMilli: 8000, GPUs: 1, GPUMilli: 1000})
	}
	huge := Request{CPUMilli: 120000, GPUs: 8, GPUMilli: 1000}
	reqs = append(reqs, huge)
	fgd, err := EstimateWorkload("fgd", reqs, nodes, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	if len(fgd.Types) != 1 {
		t.Fatalf("fgd keeps %d types, want the popular one only", len(fgd.Types))
	}
	bf, err := EstimateWorkload("babelfish", reqs, nodes, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	if len(bf.Types) != 2 || bf.Types[1].CPUMilli != 120000 {
		t.Fatalf("babelfish types %+v, want the 120-core type kept", bf.Types)
	}
	// 1 of 100 tasks, hosted by 1 of 20 nodes: 0.01 x 20, beside the
	// typical types' total of 1, renormalised.
	if got, want := bf.Types[1].Weight, 0.2/1.2; math.Abs(got-want) > 1e-9 {
		t.Fatalf("scarce weight %v, want %v", got, want)
	}
}

func TestNewScorerErrors(t *testing.T) {
	if _, err := NewScorer("nope", nil); err == nil || !strings.Contains(err.Error(), `policy "nope"`) {
		t.Fatalf("unknown policy: %v", err)
	}
	if _, err := NewScorer("fgd", nil); err == nil || !strings.Contains(err.Error(), "needs a workload") {
		t.Fatalf("fgd without workload: %v", err)
	}
}

func TestBabelfishBreaksTiesByCPUStranding(t *testing.T) {
	// One task type asks 1000 CPU milli per GPU; StrandCPUShare 4 says a
	// free GPU needs 4000 free CPU milli to stay usable. FGD scores both
	// nodes alike for every task below; the stranding tie-break decides.
	w := mustWorkload(t, TaskType{CPUMilli: 1000, GPUs: 1, GPUMilli: 1000, Weight: 1})
	poor := UniformNode("poor", 8000, 100, "T4", 3) // 3 GPUs, CPU for 2
	rich := UniformNode("rich", 64000, 100, "T4", 3)
	tests := []struct {
		name  string
		nodes []NodeInfo
		cpu   int64
		want  string
	}{
		{"CPU-light work goes where CPU is scarce", []NodeInfo{rich, poor}, 1000, "poor"},
		{"CPU-hungry work goes where CPU is plentiful", []NodeInfo{poor, rich}, 6000, "rich"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewState(tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			req := Request{CPUMilli: tc.cpu, GPUs: 1, GPUMilli: 1000}
			fgd := &FGD{Workload: w}
			a, _ := fgd.Score(st.At(0), &req)
			b, _ := fgd.Score(st.At(1), &req)
			if a != b {
				t.Fatalf("FGD scores %v and %v differ: not a tie", a, b)
			}
			c, ok := NewPlacer(NewBabelfish(w, 4)).Best(st, &req, nil)
			if !ok || c.Node.Info.Name != tc.want {
				t.Fatalf("babelfish chose %s, want %s", c.Node.Info.Name, tc.want)
			}
		})
	}
}
