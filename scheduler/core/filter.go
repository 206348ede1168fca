package core

// Filter is one feasibility check of the pipeline: a node that fails any
// filter is never scored for the request.
type Filter interface {
	Name() string
	Feasible(n *NodeState, r *Request) bool
}

// DefaultFilters is the feasibility pipeline every placement runs.
func DefaultFilters() []Filter {
	return []Filter{schedulable{}, resourceFit{}, gpuModel{}, gpuFit{}}
}

type schedulable struct{}

func (schedulable) Name() string { return "unschedulable" }
func (schedulable) Feasible(n *NodeState, _ *Request) bool {
	return !n.Info.Unschedulable
}

type resourceFit struct{}

func (resourceFit) Name() string { return "cpu-or-memory" }
func (resourceFit) Feasible(n *NodeState, r *Request) bool {
	return n.CPUFree >= r.CPUMilli && n.MemFree >= r.MemoryMiB
}

type gpuModel struct{}

func (gpuModel) Name() string { return "gpu-model" }
func (gpuModel) Feasible(n *NodeState, r *Request) bool {
	return r.GPUs == 0 || (len(n.free) > 0 && r.AcceptsModel(n.Info.GPUModel))
}

type gpuFit struct{}

func (gpuFit) Name() string { return "gpu-free" }
func (gpuFit) Feasible(n *NodeState, r *Request) bool {
	return gpusFitting(n, r.GPUMilli) >= r.GPUs
}

// gpusFitting counts healthy GPUs with at least milli free.
func gpusFitting(n *NodeState, milli int64) int {
	if milli == MilliPerGPU {
		return n.fullFree
	}
	c := 0
	for _, f := range n.free {
		if f >= milli {
			c++
		}
	}
	return c
}

// feasible runs the filters in order and names the first that fails.
func feasible(filters []Filter, n *NodeState, r *Request) (bool, string) {
	for _, f := range filters {
		if !f.Feasible(n, r) {
			return false, f.Name()
		}
	}
	return true, ""
}
