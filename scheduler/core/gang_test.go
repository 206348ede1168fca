package core

import (
	"slices"
	"strings"
	"testing"
)

func islandNode(name string, islands ...int) NodeInfo {
	n := UniformNode(name, 64000, 512000, "H100", len(islands))
	for i, is := range islands {
		n.GPUs[i].Island = is
	}
	return n
}

func TestPlaceGang(t *testing.T) {
	sickA := UniformNode("a", 64000, 512000, "H100", 8)
	sickA.GPUs[2].Healthy = false
	tests := []struct {
		name      string
		nodes     []NodeInfo
		inUse     map[string][]int64
		job       Job
		wantNodes []string // distinct nodes used, in binding order
		// spreadNodes overrides wantNodes for spread, which ranks the last
		// node by emptiness rather than fit.
		spreadNodes []string
		wantGPUs    [][]int // device indices per worker; nil skips the check
		wantErr     string
	}{
		{
			name:      "one node when it fits",
			nodes:     []NodeInfo{UniformNode("a", 64000, 512000, "H100", 8), UniformNode("b", 64000, 512000, "H100", 8)},
			job:       Job{Name: "j", Workers: 2, Worker: Request{CPUMilli: 1000, GPUs: 4, GPUMilli: 1000}},
			wantNodes: []string{"a"},
			wantGPUs:  [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}},
		},
		{
			name:        "fewest nodes: the largest first, then the tightest fit",
			nodes:       []NodeInfo{UniformNode("s", 64000, 512000, "H100", 4), UniformNode("l", 64000, 512000, "H100", 8), UniformNode("m", 64000, 512000, "H100", 4)},
			inUse:       map[string][]int64{"m": {1000, 1000}},
			job:         Job{Name: "j", Workers: 5, Worker: Request{GPUs: 2, GPUMilli: 1000}},
			wantNodes:   []string{"l", "m"},
			spreadNodes: []string{"l", "s"},
		},
		{
			name:      "a worker stays inside one NVLink island",
			nodes:     []NodeInfo{islandNode("split", 0, 0, 0, 0, 1, 1, 1, 1), islandNode("whole", 0, 0, 0, 0)},
			inUse:     map[string][]int64{"split": {1000, 0, 0, 0, 1000}},
			job:       Job{Name: "j", Workers: 1, Worker: Request{GPUs: 4, GPUMilli: 1000}},
			wantNodes: []string{"whole"},
			wantGPUs:  [][]int{{0, 1, 2, 3}},
		},
		{
			name:      "the fullest island that fits, so big islands stay whole",
			nodes:     []NodeInfo{islandNode("n", 0, 0, 0, 0, 1, 1, 1, 1)},
			inUse:     map[string][]int64{"n": {1000, 1000}},
			job:       Job{Name: "j", Workers: 1, Worker: Request{GPUs: 2, GPUMilli: 1000}},
			wantNodes: []string{"n"},
			wantGPUs:  [][]int{{2, 3}},
		},
		{
			name:      "spans islands only when no island fits",
			nodes:     []NodeInfo{islandNode("split", 0, 0, 0, 0, 1, 1, 1, 1)},
			inUse:     map[string][]int64{"split": {1000, 0, 0, 0, 1000}},
			job:       Job{Name: "j", Workers: 1, Worker: Request{GPUs: 4, GPUMilli: 1000}},
			wantNodes: []string{"split"},
			wantGPUs:  [][]int{{1, 2, 3, 5}},
		},
		{
			name:      "unhealthy GPU never used",
			nodes:     []NodeInfo{sickA, UniformNode("b", 64000, 512000, "H100", 8)},
			job:       Job{Name: "j", Workers: 3, Worker: Request{GPUs: 4, GPUMilli: 1000}},
			wantNodes: []string{"b", "a"},
		},
		{
			name:      "sharing workers pack GPUs",
			nodes:     []NodeInfo{UniformNode("a", 64000, 512000, "T4", 2), UniformNode("b", 64000, 512000, "T4", 2)},
			job:       Job{Name: "j", Workers: 3, Worker: Request{GPUs: 1, GPUMilli: 500}},
			wantNodes: []string{"a"},
		},
		{
			name:    "all or nothing",
			nodes:   []NodeInfo{UniformNode("a", 64000, 512000, "H100", 8), UniformNode("b", 64000, 512000, "H100", 8)},
			job:     Job{Name: "j", Workers: 3, Worker: Request{GPUs: 8, GPUMilli: 1000}},
			wantErr: "3 workers wanted, free capacity for 2 on 2 nodes",
		},
		{
			name:    "cpu bounds the workers per node",
			nodes:   []NodeInfo{UniformNode("a", 4000, 512000, "H100", 8)},
			job:     Job{Name: "j", Workers: 3, Worker: Request{CPUMilli: 2000, GPUs: 1, GPUMilli: 1000}},
			wantErr: "free capacity for 2 on 1 nodes",
		},
		{
			name:    "no node fits one worker",
			nodes:   []NodeInfo{UniformNode("a", 4000, 512000, "T4", 2)},
			job:     Job{Name: "j", Workers: 1, Worker: Request{GPUs: 4, GPUMilli: 1000}},
			wantErr: "no node fits one worker: 0/1 nodes fit (1 gpu-free)",
		},
		{
			name:    "invalid job",
			nodes:   []NodeInfo{UniformNode("a", 4000, 512000, "T4", 2)},
			job:     Job{Name: "j", Workers: 0},
			wantErr: "job j workers 0: must be >= 1",
		},
	}
	w := mustWorkload(t, TaskType{GPUs: 4, GPUMilli: 1000, Weight: 1}, TaskType{GPUs: 1, GPUMilli: 500, Weight: 1})
	for _, policy := range PolicyNames() {
		for _, tc := range tests {
			t.Run(policy+"/"+tc.name, func(t *testing.T) {
				st, err := NewState(tc.nodes)
				if err != nil {
					t.Fatal(err)
				}
				for n, m := range tc.inUse {
					used(t, st, n, m...)
				}
				before := st.AllocatedGPUMilli()
				sc, err := NewScorer(policy, w)
				if err != nil {
					t.Fatal(err)
				}
				bs, err := NewPlacer(sc).PlaceGang(st, &tc.job)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("PlaceGang = %v, want %q", err, tc.wantErr)
					}
					if st.AllocatedGPUMilli() != before {
						t.Fatalf("a failed gang changed the state")
					}
					return
				}
				if err != nil {
					t.Fatalf("PlaceGang: %v", err)
				}
				if len(bs) != tc.job.Workers {
					t.Fatalf("%d bindings for %d workers", len(bs), tc.job.Workers)
				}
				var nodes []string
				for i, b := range bs {
					if b.Worker != i || b.Job != tc.job.Name {
						t.Fatalf("binding %d names worker %d of %s", i, b.Worker, b.Job)
					}
					if !slices.Contains(nodes, b.Node) {
						nodes = append(nodes, b.Node)
					}
					n := st.Node(b.Node)
					for _, g := range b.GPUs {
						if !n.Info.GPUs[n.position(g.Index)].Healthy {
							t.Fatalf("worker %d got unhealthy GPU %d on %s", i, g.Index, b.Node)
						}
					}
					if tc.wantGPUs != nil {
						var idx []int
						for _, g := range b.GPUs {
							idx = append(idx, g.Index)
						}
						if !slices.Equal(idx, tc.wantGPUs[i]) {
							t.Fatalf("worker %d GPUs %v, want %v", i, idx, tc.wantGPUs[i])
						}
					}
				}
				want := tc.wantNodes
				if policy == "spread" && tc.spreadNodes != nil {
					want = tc.spreadNodes
				}
				if !slices.Equal(nodes, want) {
					t.Fatalf("nodes %v, want %v", nodes, want)
				}
				if got, want := st.AllocatedGPUMilli()-before, tc.job.GPUMilli(); got != want {
					t.Fatalf("allocated %d GPU milli, want %d", got, want)
				}
			})
		}
	}
}
