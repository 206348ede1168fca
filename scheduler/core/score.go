package core

import (
	"fmt"
	"slices"
)

// Scorer ranks a feasible node for a request and says which GPUs the
// request would take there. Higher scores win; equal scores are ties.
// Score is only called on nodes that passed every filter.
type Scorer interface {
	Name() string
	Score(n *NodeState, r *Request) (score float64, gpus GPUSet)
}

// PolicyNames lists the scorer names NewScorer knows.
func PolicyNames() []string { return []string{"spread", "bestfit", "fgd", "babelfish"} }

// NewScorer returns the named scorer. Workload is the task mix the
// fragmentation-aware scorers (fgd, babelfish) plan for; the others ignore it.
func NewScorer(name string, w *Workload) (Scorer, error) {
	switch name {
	case "spread":
		return Spread{}, nil
	case "bestfit":
		return BestFit{}, nil
	case "fgd", "babelfish":
		if w == nil || len(w.Types) == 0 {
			return nil, fmt.Errorf("policy %s: needs a workload with at least one task type", name)
		}
		if name == "fgd" {
			return &FGD{Workload: w}, nil
		}
		return NewBabelfish(w, 0), nil
	}
	return nil, fmt.Errorf("policy %q: want one of %v", name, PolicyNames())
}

// pickGPUs chooses the GPUs a request takes on a node the filters passed:
// for a sharing request the one picked by share, for whole GPUs an
// NVLink-island-aware choice, for CPU-only requests none.
func pickGPUs(n *NodeState, r *Request, share func(*NodeState, int64) int) GPUSet {
	switch {
	case r.GPUs == 0:
		return 0
	case r.GPUMilli < MilliPerGPU:
		return GPUSet(0).With(share(n, r.GPUMilli))
	default:
		g, _ := pickWhole(n, r.GPUs)
		return g
	}
}

// bestFitGPU is the fitting GPU with the least free milli (first on ties).
func bestFitGPU(n *NodeState, milli int64) int {
	best := -1
	for p, f := range n.free {
		if f >= milli && (best < 0 || f < n.free[best]) {
			best = p
		}
	}
	return best
}

// worstFitGPU is the fitting GPU with the most free milli (first on ties).
func worstFitGPU(n *NodeState, milli int64) int {
	best := -1
	for p, f := range n.free {
		if f >= milli && (best < 0 || f > n.free[best]) {
			best = p
		}
	}
	return best
}

// pickWhole chooses k fully free GPUs for one worker, keeping it inside one
// NVLink island when any island can hold it: the fullest island that fits
// (so big islands stay whole for big jobs), lowest positions first. When no
// island fits, it spans the fewest islands, largest first.
func pickWhole(n *NodeState, k int) (GPUSet, bool) {
	if k <= 0 {
		return 0, true
	}
	if n.fullFree < k {
		return 0, false
	}
	gpus := n.Info.GPUs
	// Fast path: one island (the usual node) means the first k free GPUs.
	single := true
	for _, g := range gpus[1:] {
		if g.Island != gpus[0].Island {
			single = false
			break
		}
	}
	if single {
		var s GPUSet
		for p, f := range n.free {
			if f == MilliPerGPU {
				s = s.With(p)
				if s.Len() == k {
					return s, true
				}
			}
		}
		return 0, false
	}
	type island struct {
		id   int
		free []int
	}
	var islands []island
	for p, f := range n.free {
		if f != MilliPerGPU {
			continue
		}
		i := slices.IndexFunc(islands, func(is island) bool { return is.id == gpus[p].Island })
		if i < 0 {
			islands = append(islands, island{id: gpus[p].Island})
			i = len(islands) - 1
		}
		islands[i].free = append(islands[i].free, p)
	}
	best := -1
	for i, is := range islands {
		if len(is.free) >= k && (best < 0 || len(is.free) < len(islands[best].free)) {
			best = i
		}
	}
	var s GPUSet
	if best >= 0 {
		for _, p := range islands[best].free[:k] {
			s = s.With(p)
		}
		return s, true
	}
	slices.SortStableFunc(islands, func(a, b island) int { return len(b.free) - len(a.free) })
	for _, is := range islands {
		for _, p := range is.free {
			s = s.With(p)
			if s.Len() == k {
				return s, true
			}
		}
	}
	return 0, false
}

// Spread is kube-scheduler's LeastAllocated over CPU, memory and GPU milli:
// the node left with the largest free fraction wins, so work spreads out.
type Spread struct{}

// Name implements Scorer.
func (Spread) Name() string { return "spread" }

// Score implements Scorer.
func (Spread) Score(n *NodeState, r *Request) (float64, GPUSet) {
	var sum, weights int64
	add := func(free, capacity, req int64) {
		weights++
		if capacity <= 0 {
			return
		}
		sum += (free - req) * 100 / capacity
	}
	add(n.CPUFree, n.Info.CPUMilli, r.CPUMilli)
	add(n.MemFree, n.Info.MemoryMiB, r.MemoryMiB)
	add(n.totalFree, int64(len(n.free))*MilliPerGPU, r.TotalGPUMilli())
	return float64(sum / weights), pickGPUs(n, r, worstFitGPU)
}

// Normalisers of the published BestFit score: the largest node it assumed.
const (
	bestFitMaxCPUMilli = 128000
	bestFitMaxGPUMilli = 8000
)

// BestFit packs: the node left with the least free CPU and GPU (each
// normalised by the largest node, weighted equally) wins, and a sharing
// task takes the fullest GPU it fits on.
type BestFit struct{}

// Name implements Scorer.
func (BestFit) Name() string { return "bestfit" }

// Score implements Scorer.
func (BestFit) Score(n *NodeState, r *Request) (float64, GPUSet) {
	left := 0.5*float64(n.CPUFree-r.CPUMilli)/bestFitMaxCPUMilli +
		0.5*float64(n.totalFree-r.TotalGPUMilli())/bestFitMaxGPUMilli
	// Integer scores, as in kube-scheduler, so near-equal nodes tie.
	return float64(int64((1 - left) * 100)), pickGPUs(n, r, bestFitGPU)
}
