package core

import (
	"cmp"
	"fmt"
	"slices"
)

// capacity is how many workers of r a node can take now (0 if a filter
// rejects it), counting CPU, memory and GPUs.
func capacity(filters []Filter, n *NodeState, r *Request) int {
	if ok, _ := feasible(filters, n, r); !ok {
		return 0
	}
	k := int64(1 << 30)
	if r.CPUMilli > 0 {
		k = min(k, n.CPUFree/r.CPUMilli)
	}
	if r.MemoryMiB > 0 {
		k = min(k, n.MemFree/r.MemoryMiB)
	}
	switch {
	case r.GPUs == 0:
	case r.GPUMilli == MilliPerGPU:
		k = min(k, int64(n.fullFree/r.GPUs))
	default:
		var slots int64
		for _, f := range n.free {
			slots += f / r.GPUMilli
		}
		k = min(k, slots)
	}
	return int(k)
}

// islandCapacity is how many whole-GPU workers of r fit on the node with
// each worker inside one NVLink island.
func islandCapacity(n *NodeState, r *Request) int {
	if r.GPUs == 0 || r.GPUMilli < MilliPerGPU {
		return 1 << 30
	}
	free := map[int]int{}
	for p, f := range n.free {
		if f == MilliPerGPU {
			free[n.Info.GPUs[p].Island]++
		}
	}
	k := 0
	for _, c := range free {
		k += c / r.GPUs
	}
	return k
}

// PlaceGang places every worker of the job or none: on the fewest nodes
// (largest capacity first, the last node chosen as the best fit for the
// remainder), each whole-GPU worker inside one NVLink island where the node
// allows, ranked by the placer's scorer. On success the bindings are applied
// to st; on failure st is unchanged and the error says why.
func (p *Placer) PlaceGang(st *State, j *Job) ([]Binding, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	r := &j.Worker
	type cand struct {
		n            *NodeState
		cap, islands int
	}
	var cands []cand
	total := 0
	for i := range st.nodes {
		n := &st.nodes[i]
		if k := capacity(p.filters, n, r); k > 0 {
			cands = append(cands, cand{n: n, cap: min(k, j.Workers), islands: islandCapacity(n, r)})
			total += min(k, j.Workers)
		}
	}
	if total < j.Workers {
		if len(cands) == 0 {
			return nil, fmt.Errorf("job %s: no node fits one worker: %s", j.Name, Explain(st, p.filters, r))
		}
		return nil, fmt.Errorf("job %s: %d workers wanted, free capacity for %d on %d nodes", j.Name, j.Workers, total, len(cands))
	}
	// One worker's score per node ranks nodes of equal standing.
	score := map[*NodeState]float64{}
	for _, c := range cands {
		s, _ := p.scorer.Score(c.n, r)
		score[c.n] = s
	}
	var bindings []Binding
	rollback := func() {
		for i := len(bindings) - 1; i >= 0; i-- {
			// Releasing what was just applied cannot fail.
			_ = st.Release(bindings[i])
		}
	}
	remaining := j.Workers
	for remaining > 0 {
		// A node that takes the whole remainder ends the gang: pick the one
		// that keeps workers in islands, scores best, and fits tightest.
		best := -1
		for i, c := range cands {
			if c.n == nil || c.cap < remaining {
				continue
			}
			if best < 0 || lessCand(c.islands >= remaining, score[c.n], c.cap, cands[best].islands >= remaining, score[cands[best].n], cands[best].cap) {
				best = i
			}
		}
		take := remaining
		if best < 0 {
			// Otherwise the largest node, so the gang spans the fewest nodes.
			for i, c := range cands {
				if c.n == nil {
					continue
				}
				if best < 0 || c.cap > cands[best].cap || (c.cap == cands[best].cap && score[c.n] > score[cands[best].n]) {
					best = i
				}
			}
			take = cands[best].cap
		}
		n := cands[best].n
		cands[best].n = nil
		for range take {
			gpus, ok := p.workerGPUs(n, r)
			if !ok {
				rollback()
				return nil, fmt.Errorf("job %s: node %s ran out of room for worker %d", j.Name, n.Info.Name, len(bindings))
			}
			b := st.Bind(j.Name, len(bindings), n, r, gpus)
			if err := st.Apply(b); err != nil {
				rollback()
				return nil, fmt.Errorf("job %s: %w", j.Name, err)
			}
			bindings = append(bindings, b)
		}
		remaining -= take
	}
	return bindings, nil
}

// lessCand orders candidate last nodes: island fit first, then score, then
// the tightest fit.
func lessCand(aIsl bool, aScore float64, aCap int, bIsl bool, bScore float64, bCap int) bool {
	if aIsl != bIsl {
		return aIsl
	}
	if aScore != bScore {
		return aScore > bScore
	}
	return aCap < bCap
}

// workerGPUs picks one worker's GPUs on a node: the scorer's choice for a
// sharing worker, an island-aware choice for whole GPUs.
func (p *Placer) workerGPUs(n *NodeState, r *Request) (GPUSet, bool) {
	if ok, _ := feasible(p.filters, n, r); !ok {
		return 0, false
	}
	switch {
	case r.GPUs == 0:
		return 0, true
	case r.GPUMilli < MilliPerGPU:
		_, g := p.scorer.Score(n, r)
		return g, g != 0
	default:
		return pickWhole(n, r.GPUs)
	}
}

// sortJobs orders jobs for scheduling: higher priority, then older, then
// by name so the order is total.
func sortJobs(js []Job) {
	slices.SortStableFunc(js, func(a, b Job) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}
