package core

import (
	"strings"
	"testing"
)

func TestRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		r       Request
		wantErr string
	}{
		{"cpu only", Request{CPUMilli: 1000, MemoryMiB: 10}, ""},
		{"sharing", Request{CPUMilli: 1000, GPUs: 1, GPUMilli: 300}, ""},
		{"whole gpus", Request{GPUs: 8, GPUMilli: 1000}, ""},
		{"negative cpu", Request{CPUMilli: -1}, "cpu_milli -1"},
		{"negative memory", Request{MemoryMiB: -5}, "memory_mib -5"},
		{"milli without gpus", Request{GPUMilli: 100}, "gpu_milli 100: must be 0 when gpus is 0"},
		{"gpus without milli", Request{GPUs: 1}, "gpu_milli 0: must be in 1..1000"},
		{"milli over 1000", Request{GPUs: 1, GPUMilli: 1001}, "gpu_milli 1001"},
		{"shared multi-gpu", Request{GPUs: 2, GPUMilli: 500}, "multi-GPU tasks take whole GPUs"},
		{"too many gpus", Request{GPUs: 65, GPUMilli: 1000}, "gpus 65: must be in 0..64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestShapeIgnoresModelOrder(t *testing.T) {
	a := Request{GPUs: 1, GPUMilli: 500, Models: []string{"T4", "A100"}}
	b := Request{GPUs: 1, GPUMilli: 500, Models: []string{"A100", "T4", "T4"}}
	if a.Shape() != b.Shape() {
		t.Fatalf("shapes differ: %+v vs %+v", a.Shape(), b.Shape())
	}
	c := Request{GPUs: 1, GPUMilli: 500}
	if a.Shape() == c.Shape() {
		t.Fatalf("a model constraint must change the shape")
	}
}

func TestGPUSet(t *testing.T) {
	s := GPUSet(0).With(0).With(3).With(63)
	if got := s.Positions(); len(got) != 3 || got[0] != 0 || got[1] != 3 || got[2] != 63 {
		t.Fatalf("Positions = %v", got)
	}
	if s.Len() != 3 || !s.Has(3) || s.Has(2) {
		t.Fatalf("Len/Has wrong for %b", s)
	}
}

func twoNodes() []NodeInfo {
	a := UniformNode("a", 8000, 1000, "T4", 2)
	b := UniformNode("b", 16000, 2000, "A100", 4)
	b.GPUs[1].Healthy = false
	return []NodeInfo{a, b}
}

func TestStateApplyRelease(t *testing.T) {
	tests := []struct {
		name    string
		b       Binding
		wantErr string
	}{
		{"fits", Binding{Node: "a", CPUMilli: 1000, MemoryMiB: 100, GPUs: []GPUShare{{Index: 0, Milli: 500}}}, ""},
		{"unknown node", Binding{Node: "z"}, `node "z": unknown`},
		{"too much cpu", Binding{Node: "a", CPUMilli: 9000}, "cpu_milli 9000: node a has 8000 free"},
		{"too much memory", Binding{Node: "a", MemoryMiB: 1001}, "memory_mib 1001: node a has 1000 free"},
		{"no such gpu", Binding{Node: "a", GPUs: []GPUShare{{Index: 7, Milli: 100}}}, "gpu index 7: node a has no such GPU"},
		{"gpu over 1000", Binding{Node: "a", GPUs: []GPUShare{{Index: 0, Milli: 1001}}}, "milli 1001"},
		{"gpu twice", Binding{Node: "a", GPUs: []GPUShare{{Index: 0, Milli: 100}, {Index: 0, Milli: 100}}}, "listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewState(twoNodes())
			if err != nil {
				t.Fatal(err)
			}
			n := st.Node("a")
			v := n.Version()
			err = st.Apply(tc.b)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply = %v, want %q", err, tc.wantErr)
				}
				if n.Version() != v || n.CPUFree != 8000 || n.FreeGPUMilli() != 2000 {
					t.Fatalf("a failed Apply changed the node")
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if n.Version() == v || n.CPUFree != 7000 || n.Free(0) != 500 || st.AllocatedGPUMilli() != 500 {
				t.Fatalf("after Apply: version %d->%d cpu %d free0 %d alloc %d", v, n.Version(), n.CPUFree, n.Free(0), st.AllocatedGPUMilli())
			}
			if err := st.Release(tc.b); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if !n.Idle() || n.FreeGPUMilli() != 2000 || n.FullyFreeGPUs() != 2 || st.AllocatedGPUMilli() != 0 {
				t.Fatalf("Release did not restore the node")
			}
			if err := st.Release(tc.b); err == nil {
				t.Fatalf("releasing twice must fail")
			}
		})
	}
}

func TestUnhealthyGPUHasNoFreeMilli(t *testing.T) {
	st, err := NewState(twoNodes())
	if err != nil {
		t.Fatal(err)
	}
	b := st.Node("b")
	if b.Free(1) != 0 || b.FreeGPUMilli() != 3000 || b.FullyFreeGPUs() != 3 {
		t.Fatalf("unhealthy GPU counted: free1 %d total %d full %d", b.Free(1), b.FreeGPUMilli(), b.FullyFreeGPUs())
	}
	if st.CapacityGPUMilli() != 6000 {
		t.Fatalf("capacity %d, want every GPU (6000)", st.CapacityGPUMilli())
	}
}

func TestNewStateRejectsBadNodes(t *testing.T) {
	dup := UniformNode("a", 1, 1, "", 1)
	twoIdx := UniformNode("c", 1, 1, "", 2)
	twoIdx.GPUs[1].Index = 0
	tests := []struct {
		name    string
		nodes   []NodeInfo
		wantErr string
	}{
		{"duplicate name", []NodeInfo{dup, dup}, `node name "a": duplicate`},
		{"empty name", []NodeInfo{{}}, "node name: must not be empty"},
		{"duplicate gpu index", []NodeInfo{twoIdx}, "gpu index 0: duplicate"},
		{"too many gpus", []NodeInfo{UniformNode("x", 1, 1, "", 65)}, "gpus 65: at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewState(tc.nodes)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewState = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
