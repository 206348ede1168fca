package core

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// MilliPerGPU is the capacity of one GPU in milli-GPU.
const MilliPerGPU = 1000

// MaxGPUsPerNode bounds the GPUs a node may have: GPU sets are 64-bit masks.
const MaxGPUsPerNode = 64

// Request is what one task (or one worker of a gang) asks for.
type Request struct {
	CPUMilli  int64 // thousandths of a core
	MemoryMiB int64
	// GPUs is how many GPUs the task uses; 0 for a CPU-only task.
	GPUs int
	// GPUMilli is the share of each GPU the task takes, 1..1000. A sharing
	// task has GPUs == 1 and GPUMilli < 1000; multi-GPU tasks take whole GPUs.
	GPUMilli int64
	// Models lists the GPU models the task accepts; empty accepts any.
	Models []string
}

// Validate reports the first field out of its limits.
func (r *Request) Validate() error {
	switch {
	case r.CPUMilli < 0:
		return fmt.Errorf("request cpu_milli %d: must be >= 0", r.CPUMilli)
	case r.MemoryMiB < 0:
		return fmt.Errorf("request memory_mib %d: must be >= 0", r.MemoryMiB)
	case r.GPUs < 0 || r.GPUs > MaxGPUsPerNode:
		return fmt.Errorf("request gpus %d: must be in 0..%d", r.GPUs, MaxGPUsPerNode)
	case r.GPUs == 0 && r.GPUMilli != 0:
		return fmt.Errorf("request gpu_milli %d: must be 0 when gpus is 0", r.GPUMilli)
	case r.GPUs > 0 && (r.GPUMilli <= 0 || r.GPUMilli > MilliPerGPU):
		return fmt.Errorf("request gpu_milli %d: must be in 1..%d when gpus > 0", r.GPUMilli, MilliPerGPU)
	case r.GPUs > 1 && r.GPUMilli != MilliPerGPU:
		return fmt.Errorf("request gpu_milli %d: must be %d when gpus is %d (multi-GPU tasks take whole GPUs)", r.GPUMilli, MilliPerGPU, r.GPUs)
	}
	return nil
}

// Sharing reports whether the request takes part of one GPU.
func (r *Request) Sharing() bool { return r.GPUs == 1 && r.GPUMilli < MilliPerGPU }

// TotalGPUMilli is the GPU milli the request takes in all.
func (r *Request) TotalGPUMilli() int64 { return int64(r.GPUs) * r.GPUMilli }

// AcceptsModel reports whether a GPU of the given model satisfies the request.
func (r *Request) AcceptsModel(model string) bool {
	if len(r.Models) == 0 {
		return true
	}
	return slices.Contains(r.Models, model)
}

// Shape is the comparable identity of a request: requests with equal shapes
// are interchangeable for placement, so scores are cached per shape.
type Shape struct {
	CPUMilli  int64
	MemoryMiB int64
	GPUs      int
	GPUMilli  int64
	Models    string // sorted, "|"-joined
}

// Shape returns the request's shape.
func (r *Request) Shape() Shape {
	s := Shape{CPUMilli: r.CPUMilli, MemoryMiB: r.MemoryMiB, GPUs: r.GPUs, GPUMilli: r.GPUMilli}
	if len(r.Models) > 0 {
		m := slices.Clone(r.Models)
		slices.Sort(m)
		s.Models = strings.Join(slices.Compact(m), "|")
	}
	return s
}

// GPUSet is a set of GPU positions on one node (bit i = the node's i-th GPU).
type GPUSet uint64

// Has reports whether position i is in the set.
func (g GPUSet) Has(i int) bool { return g&(1<<uint(i)) != 0 }

// With returns the set with position i added.
func (g GPUSet) With(i int) GPUSet { return g | 1<<uint(i) }

// Len is the number of GPUs in the set.
func (g GPUSet) Len() int { return bits.OnesCount64(uint64(g)) }

// Positions lists the positions in ascending order.
func (g GPUSet) Positions() []int {
	out := make([]int, 0, g.Len())
	for v := uint64(g); v != 0; v &= v - 1 {
		out = append(out, bits.TrailingZeros64(v))
	}
	return out
}
