package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"babelfish.dev/babelfish/scheduler/core"
)

func TestReadNodes(t *testing.T) {
	tests := []struct {
		name    string
		csv     string
		want    int
		wantErr string
	}{
		{"ok", "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,8000,1000,0,\n", 2, ""},
		{"float integers", "sn,cpu_milli,memory_mib,gpu,model\nn0,64000.0,1,2.0,T4\n", 1, ""},
		{"missing column", "sn,cpu_milli,gpu\nn0,1,1\n", 0, `column "memory_mib" missing`},
		{"bad number", "sn,cpu_milli,memory_mib,gpu,model\nn0,lots,1,1,T4\n", 0, `line 2 cpu_milli "lots": want an integer`},
		{"negative", "sn,cpu_milli,memory_mib,gpu,model\nn0,1,-1,1,T4\n", 0, "memory_mib -1: must be >= 0"},
		{"too many gpus", "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,65,T4\n", 0, "gpu 65: at most 64"},
		{"empty", "sn,cpu_milli,memory_mib,gpu,model\n", 0, "no nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes, err := ReadNodes(strings.NewReader(tc.csv))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadNodes = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(nodes) != tc.want {
				t.Fatalf("ReadNodes = %d nodes, %v; want %d", len(nodes), err, tc.want)
			}
			if nodes[0].Name != "n0" || nodes[0].CPUMilli != 64000 || len(nodes[0].GPUs) != 2 || !nodes[0].GPUs[1].Healthy {
				t.Fatalf("node 0 = %+v", nodes[0])
			}
		})
	}
}

func TestReadTasks(t *testing.T) {
	const head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n"
	tests := []struct {
		name    string
		csv     string
		want    core.Request
		wantErr string
	}{
		{"sharing", head + "p,6000,12288,1,460,,LS\n", core.Request{CPUMilli: 6000, MemoryMiB: 12288, GPUs: 1, GPUMilli: 460}, ""},
		{"cpu only drops milli", head + "p,8000,30517,0,0,,BE\n", core.Request{CPUMilli: 8000, MemoryMiB: 30517}, ""},
		{"gpu spec", head + "p,1,1,1,1000,V100M16|V100M32,LS\n", core.Request{CPUMilli: 1, MemoryMiB: 1, GPUs: 1, GPUMilli: 1000, Models: []string{"V100M16", "V100M32"}}, ""},
		{"milli capped", head + "p,1,1,1,1500,,LS\n", core.Request{CPUMilli: 1, MemoryMiB: 1, GPUs: 1, GPUMilli: 1000}, ""},
		{"gpus without milli", head + "p,1,1,1,0,,LS\n", core.Request{}, "line 2 (p): request gpu_milli 0"},
		{"shared multi-gpu", head + "p,1,1,2,500,,LS\n", core.Request{}, "multi-GPU tasks take whole GPUs"},
		{"missing column", "name,cpu_milli\np,1\n", core.Request{}, `column "memory_mib" missing`},
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
			if got := tasks[0].Req; got.Shape() != tc.want.Shape() {
				t.Fatalf("request %+v, want %+v", got, tc.want)
			}
		})
	}
}

func synthTasks(n int) []Task {
	var out []Task
	shapes := []core.Request{
		{CPUMilli: 4000, MemoryMiB: 100, GPUs: 1, GPUMilli: 1000},
		{CPUMilli: 2000, MemoryMiB: 100, GPUs: 1, GPUMilli: 500},
		{CPUMilli: 2000, MemoryMiB: 100, GPUs: 1, GPUMilli: 300},
		{CPUMilli: 16000, MemoryMiB: 100, GPUs: 4, GPUMilli: 1000},
		{CPUMilli: 8000, MemoryMiB: 100},
	}
	for i := range n {
		out = append(out, Task{Name: fmt.Sprintf("t%03d", i), Req: shapes[i%len(shapes)]})
	}
	return out
}

func synthNodes(n int) []core.NodeInfo {
	var out []core.NodeInfo
	for i := range n {
		out = append(out, core.UniformNode(fmt.Sprintf("n%03d", i), 64000, 100000, "T4", 8))
	}
	return out
}

func TestTune(t *testing.T) {
	byName := synthTasks(10) // 1000+500+300+4000 per 5 tasks: 11600 in all
	tests := []struct {
		name   string
		target float64
	}{
		{"grow", 30000},
		{"shrink", 5000},
		{"exact", 11600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewSource(7))
			got := tune(append([]Task(nil), byName...), byName, tc.target, rng)
			var total int64
			names := map[string]bool{}
			for _, task := range got {
				total += task.Req.TotalGPUMilli()
				if names[task.Name] {
					t.Fatalf("duplicate task name %s", task.Name)
				}
				names[task.Name] = true
			}
			// Like the artifact, growth checks each copy's per-GPU milli, so
			// a multi-GPU copy may pass the target by up to 3 GPUs here.
			if float64(total) > tc.target+3000 || (tc.name != "grow" && float64(total) > tc.target) {
				t.Fatalf("total %d over the target %v", total, tc.target)
			}
			if tc.name == "grow" && (float64(total) < tc.target-4000 || len(got) <= len(byName)) {
				t.Fatalf("grew to %d (%d tasks), want close to %v", total, len(got), tc.target)
			}
			if tc.name == "exact" && len(got) != len(byName) {
				t.Fatalf("exact target changed the list to %d tasks", len(got))
			}
		})
	}
}

func TestBinnerArithmetic(t *testing.T) {
	// 91.035 is just below .035 in binary; numpy's scale-and-round gives .04.
	if got := round2(91.035); got != 91.04 {
		t.Fatalf("round2(91.035) = %v, want 91.04 as numpy rounds", got)
	}
	if got := round2(0.125); got != 0.12 {
		t.Fatalf("round2(0.125) = %v, want half to even 0.12", got)
	}
	var a []float64
	for i := range 300 {
		a = append(a, float64(i)*0.1)
	}
	if got, want := pairwiseSum(a), 4485.0; math.Abs(got-want) > 1e-9 {
		t.Fatalf("pairwiseSum = %v, want %v", got, want)
	}
	b := newBinner()
	// 10 GPUs: arrivals at 10% and 30% only; level 20 has no samples of its
	// own and no neighbours, level 11 takes level 10's.
	b.add(1000, 1000, 10)
	b.add(3000, 2000, 10)
	c := b.curve()
	if len(c) != CurveLevels || c[10] != 10 || c[11] != 10 || c[20] != 10 || c[29] != 20 || c[30] != 20 || c[130] != 20 {
		t.Fatalf("curve 10,11,20,29,30,130 = %v %v %v %v %v %v", c[10], c[11], c[20], c[29], c[30], c[130])
	}
}

func TestRun(t *testing.T) {
	nodes, tasks := synthNodes(32), synthTasks(60)
	for _, policy := range core.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			cfg := Config{Nodes: nodes, Tasks: tasks, Policy: policy, Seed: 42, Tune: 1.3}
			a, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("same seed, different results")
			}
			if len(a.Curve) != CurveLevels || a.Placed+a.Pending != a.Tasks {
				t.Fatalf("curve %d levels, placed %d + pending %d != %d", len(a.Curve), a.Placed, a.Pending, a.Tasks)
			}
			if a.AllocAt130 <= 50 || a.AllocAt130 > 100 || a.AllocAt100 > a.AllocAt130+1e-9 {
				t.Fatalf("alloc at 100 %v, at 130 %v", a.AllocAt100, a.AllocAt130)
			}
			if a.Pending == 0 || a.PendingGPU <= 0 {
				t.Fatalf("a 130%% replay must leave tasks pending")
			}
			for l := 1; l < CurveLevels; l++ {
				if a.Curve[l] > float64(l)+2 { // a level may borrow its neighbour's samples

					t.Fatalf("allocation %v at level %d exceeds what arrived", a.Curve[l], l)
				}
			}
			if a.FragRatio < 0 || a.FragRatio > 100 || a.IdleGPUMilli != a.CapacityGPU-a.AllocatedGPU {
				t.Fatalf("frag ratio %v idle %d capacity %d allocated %d", a.FragRatio, a.IdleGPUMilli, a.CapacityGPU, a.AllocatedGPU)
			}
		})
	}
}

func TestRunRejects(t *testing.T) {
	nodes, tasks := synthNodes(1), synthTasks(5)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no nodes", Config{Tasks: tasks, Policy: "fgd"}, "sim nodes: none given"},
		{"no tasks", Config{Nodes: nodes, Policy: "fgd"}, "sim tasks: none given"},
		{"bad tune", Config{Nodes: nodes, Tasks: tasks, Policy: "fgd", Tune: -1}, "sim tune -1"},
		{"bad policy", Config{Nodes: nodes, Tasks: tasks, Policy: "random"}, `policy "random"`},
		{"no gpus", Config{Nodes: []core.NodeInfo{core.UniformNode("c", 1, 1, "", 0)}, Tasks: tasks, Policy: "bestfit"}, "no GPUs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, want %q", err, tc.wantErr)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{Nodes: nodes, Tasks: tasks, Policy: "fgd"}); err == nil {
		t.Fatal("a cancelled context must stop the replay")
	}
}

func TestReadPublished(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("workload,sc_policy,tune,seed,total_gpus")
	for l := range CurveLevels {
		fmt.Fprintf(&sb, ",%d", l)
	}
	sb.WriteString("\n")
	for _, seed := range []int{42, 43} {
		fmt.Fprintf(&sb, "openb_pod_list_default,06-FGD,1.3,%d,10", seed)
		for l := range CurveLevels {
			fmt.Fprintf(&sb, ",%d", l+seed-42)
		}
		sb.WriteString("\n")
	}
	curves, err := ReadPublished(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	mean, err := MeanPublished(curves, "default", "FGD", []int64{42, 43})
	if err != nil {
		t.Fatal(err)
	}
	if mean[100] != 100.5 {
		t.Fatalf("mean at 100 = %v, want 100.5", mean[100])
	}
	if _, err := MeanPublished(curves, "default", "FGD", []int64{44}); err == nil || !strings.Contains(err.Error(), "seed 44") {
		t.Fatalf("missing seed: %v", err)
	}
	if _, err := ReadPublished(strings.NewReader("workload,seed\nx,1\n")); err == nil {
		t.Fatal("missing columns must be an error")
	}
}

// tracesDir is where the openb traces live: testdata/openb in this package
// (go test runs in the package's directory). They are part of the
// repository, so a missing file is a failure, never a skip.
func tracesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("testdata", "openb")
	if _, err := os.Stat(filepath.Join(dir, "openb_node_list_gpu_node.csv")); err != nil {
		t.Fatalf("openb traces not found (%v): they belong in scheduler/sim/testdata/openb", err)
	}
	return dir
}

// TestReplayMatchesPublished replays the default workload, seed 42, and
// checks our fgd against the artifact's published curve, and that babelfish
// is at least as good at 100% and 130%.
func TestReplayMatchesPublished(t *testing.T) {
	dir := tracesDir(t)
	nodes, err := ReadNodesFile(filepath.Join(dir, "openb_node_list_gpu_node.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := ReadTasksFile(filepath.Join(dir, "openb_pod_list_default.csv"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublishedFile(filepath.Join(dir, "expected_allo_discrete.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := MeanPublished(pub, "default", "FGD", []int64{42})
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]*Result{}
	for _, p := range []string{"fgd", "babelfish"} {
		r, err := Run(context.Background(), Config{Nodes: nodes, Tasks: tasks, Policy: p, Seed: 42, Tune: 1.3})
		if err != nil {
			t.Fatal(err)
		}
		res[p] = r
	}
	for _, l := range []int{50, 90, 100, 130} {
		if got := res["fgd"].Curve[l]; math.Abs(got-want[l]) > 1 {
			t.Errorf("fgd at %d%%: %.2f, published %.2f: more than 1 point apart", l, got, want[l])
		}
	}
	if res["fgd"].Curve[50] != want[50] {
		t.Errorf("at 50%% every task fits: fgd %.2f must equal the published %.2f exactly", res["fgd"].Curve[50], want[50])
	}
	for _, l := range []int{100, 130} {
		if got := res["babelfish"].Curve[l]; got < want[l] {
			t.Errorf("babelfish at %d%%: %.2f, below published FGD %.2f", l, got, want[l])
		}
	}
}
