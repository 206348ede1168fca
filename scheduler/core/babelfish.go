package core

import "math"

// DefaultStrandCPUShare is Babelfish's default StrandCPUShare.
const DefaultStrandCPUShare = 0.8

// Babelfish is our packing policy: FGD's fragmentation gradient first, then
// CPU stranding.
//
// FGD judges a node by whether each typical task still fits once, so it
// misses that a node whose free CPU is nearly gone strands its free GPUs for
// every task to come; on the openb traces that CPU-stranded GPU milli is
// about as large as what FGD wins over best-fit. Babelfish keeps FGD's score
// (the published integer 0..100, whose coarseness lets near-equal nodes tie
// and so packs them in a fixed order) and breaks its ties by how much the
// placement changes the node's stranded GPU milli: the free GPU milli beyond
// what the free CPU can feed at StrandCPUShare x the workload's mean CPU per
// GPU milli. CPU-hungry tasks so go where CPU is plentiful, CPU-light ones
// where it is scarce. Remaining ties go to the placer's node order.
//
// Babelfish plans for the workload EstimateWorkload builds for it, which
// also keeps task types that only a few nodes can ever host, weighted by
// that scarcity, so those nodes are not broken up by common work.
type Babelfish struct {
	Workload *Workload
	// StrandCPUShare scales the workload's mean CPU per GPU milli below which
	// free GPU milli counts as stranded (most tasks ask less than the mean);
	// 0 means DefaultStrandCPUShare.
	StrandCPUShare float64

	rho float64 // cpuPerGPUMilli, set by NewBabelfish; 0 computes per call
}

// NewBabelfish returns the Babelfish scorer for a workload.
func NewBabelfish(w *Workload, strandCPUShare float64) *Babelfish {
	b := &Babelfish{Workload: w, StrandCPUShare: strandCPUShare}
	b.rho = b.cpuPerGPUMilli()
	return b
}

// Name implements Scorer.
func (b *Babelfish) Name() string { return "babelfish" }

// cpuPerGPUMilli is the workload's mean CPU milli per GPU milli over its GPU
// tasks, scaled by StrandCPUShare; 0 when the workload has none.
func (b *Babelfish) cpuPerGPUMilli() float64 {
	var cpu, gpu float64
	for _, t := range b.Workload.Types {
		if t.GPUs > 0 {
			cpu += t.Weight * float64(t.CPUMilli)
			gpu += t.Weight * float64(int64(t.GPUs)*t.GPUMilli)
		}
	}
	if gpu == 0 {
		return 0
	}
	share := b.StrandCPUShare
	if share == 0 {
		share = DefaultStrandCPUShare
	}
	return share * cpu / gpu
}

// stranded is the free GPU milli that free CPU cannot feed at rho.
func stranded(cpuFree, gpuFree int64, rho float64) float64 {
	if rho <= 0 {
		return 0
	}
	return math.Max(0, float64(gpuFree)-float64(cpuFree)/rho)
}

// Score implements Scorer.
func (b *Babelfish) Score(n *NodeState, r *Request) (float64, GPUSet) {
	v := b.Workload.view(n.Info.GPUModel)
	before := b.Workload.NodeFrag(n)
	best, bestGPUs, bestFree := math.Inf(-1), GPUSet(0), int64(0)
	fragAfter(v, n, r, func(after float64, gpus GPUSet) {
		s := fgdScore(before, after)
		var f int64
		if r.Sharing() {
			f = n.free[gpus.Positions()[0]]
		}
		// On a node, equal scores go to the fullest GPU (best fit).
		if s > best || (s == best && f < bestFree) {
			best, bestGPUs, bestFree = s, gpus, f
		}
	})
	rho := b.rho
	if rho == 0 {
		rho = b.cpuPerGPUMilli()
	}
	relief := stranded(n.CPUFree, n.totalFree, rho) - stranded(n.CPUFree-r.CPUMilli, n.totalFree-r.TotalGPUMilli(), rho)
	// The tie-break lies strictly inside (0, 1) so it never outweighs one
	// point of FGD's score; one GPU of relief moves it most of the way.
	return best + 0.5 + 0.49*math.Tanh(relief/MilliPerGPU), bestGPUs
}
