package core

import (
	"fmt"
)

// NodeState is a node with what is free on it now.
type NodeState struct {
	Info *NodeInfo
	pos  int

	CPUFree int64
	MemFree int64
	used    []int64 // GPU milli in use, per GPU position
	free    []int64 // GPU milli usable by new work: 0 on unhealthy GPUs
	// totalFree and fullFree summarise free for the hot paths.
	totalFree int64
	fullFree  int
	version   uint64

	// Memo of Workload.NodeFrag for (fragOwner, fragVersion).
	fragOwner   *Workload
	fragVersion uint64
	frag        float64
}

// Pos is the node's position in its State.
func (n *NodeState) Pos() int { return n.pos }

// GPUCount is the number of GPUs on the node, healthy or not.
func (n *NodeState) GPUCount() int { return len(n.free) }

// Free is the GPU milli new work may take on the GPU at position i.
func (n *NodeState) Free(i int) int64 { return n.free[i] }

// Used is the GPU milli in use on the GPU at position i.
func (n *NodeState) Used(i int) int64 { return n.used[i] }

// FreeGPUMilli is the GPU milli new work may take on the whole node.
func (n *NodeState) FreeGPUMilli() int64 { return n.totalFree }

// FullyFreeGPUs counts healthy GPUs with nothing on them.
func (n *NodeState) FullyFreeGPUs() int { return n.fullFree }

// Version changes whenever the node's free resources change; caches key on it.
func (n *NodeState) Version() uint64 { return n.version }

// Idle reports whether nothing runs on the node.
func (n *NodeState) Idle() bool {
	if n.CPUFree != n.Info.CPUMilli || n.MemFree != n.Info.MemoryMiB {
		return false
	}
	for _, u := range n.used {
		if u != 0 {
			return false
		}
	}
	return true
}

// position maps a device index to its position on the node.
func (n *NodeState) position(index int) int {
	for p, g := range n.Info.GPUs {
		if g.Index == index {
			return p
		}
	}
	return -1
}

func (n *NodeState) refresh(p int) {
	old := n.free[p]
	nf := int64(0)
	if n.Info.GPUs[p].Healthy {
		nf = MilliPerGPU - n.used[p]
	}
	n.free[p] = nf
	n.totalFree += nf - old
	if old == MilliPerGPU {
		n.fullFree--
	}
	if nf == MilliPerGPU {
		n.fullFree++
	}
}

// State is the cluster as the core sees it: every node and what is free. It
// is a pure state machine: Apply and Release are its only transitions.
type State struct {
	nodes []NodeState
	index map[string]int
	clock uint64

	capacityGPUMilli  int64 // all GPUs, healthy or not
	allocatedGPUMilli int64
}

// NewState builds the state of an idle cluster.
func NewState(nodes []NodeInfo) (*State, error) {
	s := &State{nodes: make([]NodeState, len(nodes)), index: make(map[string]int, len(nodes))}
	for i := range nodes {
		info := nodes[i] // copy: the state owns its nodes
		if err := info.Validate(); err != nil {
			return nil, err
		}
		if _, dup := s.index[info.Name]; dup {
			return nil, fmt.Errorf("node name %q: duplicate", info.Name)
		}
		s.index[info.Name] = i
		n := &s.nodes[i]
		n.Info = &info
		n.pos = i
		n.CPUFree, n.MemFree = info.CPUMilli, info.MemoryMiB
		n.used = make([]int64, len(info.GPUs))
		n.free = make([]int64, len(info.GPUs))
		for p := range info.GPUs {
			n.refresh(p)
		}
		s.capacityGPUMilli += int64(len(info.GPUs)) * MilliPerGPU
		s.bump(n)
	}
	return s, nil
}

func (s *State) bump(n *NodeState) {
	s.clock++
	n.version = s.clock
}

// Len is the number of nodes.
func (s *State) Len() int { return len(s.nodes) }

// At returns the node at position i.
func (s *State) At(i int) *NodeState { return &s.nodes[i] }

// Node returns the named node, or nil.
func (s *State) Node(name string) *NodeState {
	i, ok := s.index[name]
	if !ok {
		return nil
	}
	return &s.nodes[i]
}

// CapacityGPUMilli is the GPU milli of every GPU in the cluster.
func (s *State) CapacityGPUMilli() int64 { return s.capacityGPUMilli }

// AllocatedGPUMilli is the GPU milli bound to work.
func (s *State) AllocatedGPUMilli() int64 { return s.allocatedGPUMilli }

// Apply takes a binding's resources. It fails, changing nothing, when the
// node lacks them; it does not check health, so running work found on a GPU
// that has since failed can still be recorded.
func (s *State) Apply(b Binding) error {
	n := s.Node(b.Node)
	if n == nil {
		return fmt.Errorf("binding %s/%d node %q: unknown", b.Job, b.Worker, b.Node)
	}
	if b.CPUMilli > n.CPUFree {
		return fmt.Errorf("binding %s/%d cpu_milli %d: node %s has %d free", b.Job, b.Worker, b.CPUMilli, n.Info.Name, n.CPUFree)
	}
	if b.MemoryMiB > n.MemFree {
		return fmt.Errorf("binding %s/%d memory_mib %d: node %s has %d free", b.Job, b.Worker, b.MemoryMiB, n.Info.Name, n.MemFree)
	}
	for i, g := range b.GPUs {
		p := n.position(g.Index)
		if p < 0 {
			return fmt.Errorf("binding %s/%d gpu index %d: node %s has no such GPU", b.Job, b.Worker, g.Index, n.Info.Name)
		}
		if g.Milli <= 0 || n.used[p]+g.Milli > MilliPerGPU {
			return fmt.Errorf("binding %s/%d gpu %d milli %d: node %s has %d in use of %d", b.Job, b.Worker, g.Index, g.Milli, n.Info.Name, n.used[p], MilliPerGPU)
		}
		for _, h := range b.GPUs[:i] {
			if h.Index == g.Index {
				return fmt.Errorf("binding %s/%d gpu index %d: listed twice", b.Job, b.Worker, g.Index)
			}
		}
	}
	n.CPUFree -= b.CPUMilli
	n.MemFree -= b.MemoryMiB
	for _, g := range b.GPUs {
		p := n.position(g.Index)
		n.used[p] += g.Milli
		n.refresh(p)
		s.allocatedGPUMilli += g.Milli
	}
	s.bump(n)
	return nil
}

// Release gives a binding's resources back. It fails, changing nothing, when
// the binding does not fit what is in use.
func (s *State) Release(b Binding) error {
	n := s.Node(b.Node)
	if n == nil {
		return fmt.Errorf("binding %s/%d node %q: unknown", b.Job, b.Worker, b.Node)
	}
	if n.CPUFree+b.CPUMilli > n.Info.CPUMilli || n.MemFree+b.MemoryMiB > n.Info.MemoryMiB {
		return fmt.Errorf("binding %s/%d: releases more CPU or memory than node %s holds", b.Job, b.Worker, n.Info.Name)
	}
	for _, g := range b.GPUs {
		p := n.position(g.Index)
		if p < 0 || g.Milli > n.used[p] {
			return fmt.Errorf("binding %s/%d gpu index %d: releases more than node %s holds", b.Job, b.Worker, g.Index, n.Info.Name)
		}
	}
	n.CPUFree += b.CPUMilli
	n.MemFree += b.MemoryMiB
	for _, g := range b.GPUs {
		p := n.position(g.Index)
		n.used[p] -= g.Milli
		n.refresh(p)
		s.allocatedGPUMilli -= g.Milli
	}
	s.bump(n)
	return nil
}

// Bind turns a choice of GPU positions on a node into a Binding.
func (s *State) Bind(job string, worker int, n *NodeState, r *Request, gpus GPUSet) Binding {
	b := Binding{Job: job, Worker: worker, Node: n.Info.Name, CPUMilli: r.CPUMilli, MemoryMiB: r.MemoryMiB}
	for _, p := range gpus.Positions() {
		b.GPUs = append(b.GPUs, GPUShare{Index: n.Info.GPUs[p].Index, Milli: r.GPUMilli})
	}
	return b
}
