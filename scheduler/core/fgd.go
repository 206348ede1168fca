package core

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
)

// TaskType is one kind of task in the workload mix, with its popularity.
type TaskType struct {
	CPUMilli int64
	GPUs     int
	GPUMilli int64
	Models   []string // accepted GPU models; empty accepts any
	Weight   float64  // share of tasks of this type; weights sum to 1
}

// Workload is the task mix that fragmentation is measured against: the
// paper's "target workload", estimated from the tasks seen so far.
type Workload struct {
	Types []TaskType

	mu    sync.Mutex
	views map[string]*modelView
}

// NewWorkload normalises the weights of types to sum to 1.
func NewWorkload(types []TaskType) (*Workload, error) {
	var sum float64
	for i, t := range types {
		if t.Weight < 0 || math.IsNaN(t.Weight) {
			return nil, fmt.Errorf("workload type %d weight %g: must be >= 0", i, t.Weight)
		}
		r := Request{CPUMilli: t.CPUMilli, GPUs: t.GPUs, GPUMilli: t.GPUMilli}
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("workload type %d: %w", i, err)
		}
		sum += t.Weight
	}
	if sum <= 0 {
		return nil, fmt.Errorf("workload weights: sum to %g, want > 0", sum)
	}
	w := &Workload{Types: slices.Clone(types)}
	for i := range w.Types {
		w.Types[i].Weight /= sum
	}
	return w, nil
}

// WorkloadFromRequests estimates the task mix from observed requests the way
// the FGD artifact does: count tasks per (CPU, GPU milli, GPU count, models),
// keep the most popular types until they cover the given fraction of all
// tasks (0.95 in the published experiments), and renormalise.
func WorkloadFromRequests(reqs []Request, coverage float64) (*Workload, error) {
	if len(reqs) == 0 {
		return nil, fmt.Errorf("workload: no requests to estimate from")
	}
	if coverage <= 0 || coverage > 1 {
		return nil, fmt.Errorf("workload coverage %g: must be in (0, 1]", coverage)
	}
	type key struct {
		cpu, milli int64
		gpus       int
		models     string
	}
	counts := map[key]int{}
	models := map[key][]string{}
	for i := range reqs {
		s := reqs[i].Shape()
		k := key{s.CPUMilli, s.GPUMilli, s.GPUs, s.Models}
		counts[k]++
		models[k] = reqs[i].Models
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	// Most popular first; equal counts in descending resource order, as the
	// artifact's reversed sort leaves them.
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		if c := cmp.Compare(b.cpu, a.cpu); c != 0 {
			return c
		}
		if c := cmp.Compare(b.milli, a.milli); c != 0 {
			return c
		}
		if c := cmp.Compare(b.gpus, a.gpus); c != 0 {
			return c
		}
		return cmp.Compare(b.models, a.models)
	})
	want := coverage * float64(len(reqs))
	var types []TaskType
	covered := 0
	for _, k := range keys {
		if float64(covered) >= want {
			break
		}
		covered += counts[k]
		types = append(types, TaskType{CPUMilli: k.cpu, GPUs: k.gpus, GPUMilli: k.milli, Models: models[k], Weight: float64(counts[k])})
	}
	return NewWorkload(types)
}

// modelView is the workload as nodes of one GPU model see it: types that
// cannot use the model's GPUs (CPU-only ones included) find every free GPU
// milli a fragment, so they fold into one weight.
type modelView struct {
	blind  float64 // weight of types that can use none of these GPUs
	millis []int64 // distinct per-GPU milli of the usable GPU types
	groups [][]gpuType
}

type gpuType struct {
	cpu    int64
	gpus   int
	weight float64
}

func (w *Workload) view(model string) *modelView {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.views[model]; ok {
		return v
	}
	v := &modelView{}
	for _, t := range w.Types {
		r := Request{Models: t.Models}
		if t.GPUMilli == 0 || model == "" || !r.AcceptsModel(model) {
			v.blind += t.Weight
			continue
		}
		i := slices.Index(v.millis, t.GPUMilli)
		if i < 0 {
			v.millis = append(v.millis, t.GPUMilli)
			v.groups = append(v.groups, nil)
			i = len(v.millis) - 1
		}
		v.groups[i] = append(v.groups[i], gpuType{cpu: t.CPUMilli, gpus: t.GPUs, weight: t.Weight})
	}
	if w.views == nil {
		w.views = map[string]*modelView{}
	}
	w.views[model] = v
	return v
}

// frag is the node's expected fragmentation for the workload, in GPU milli:
// for each task type, the free GPU milli that a task of that type could not
// use, weighted by the type's popularity. A type that cannot be placed at all
// (short of GPUs, CPU, or the right model) sees all free GPU milli as lost; a
// type that fits loses only the GPUs with less free than it asks per GPU.
func (v *modelView) frag(cpuFree int64, free []int64) float64 {
	var total int64
	for _, f := range free {
		total += f
	}
	if total == 0 {
		return 0
	}
	out := v.blind * float64(total)
	for i, m := range v.millis {
		fit, small := 0, int64(0)
		for _, f := range free {
			if f >= m {
				fit++
			} else {
				small += f
			}
		}
		for _, t := range v.groups[i] {
			if fit >= t.gpus && cpuFree >= t.cpu {
				out += t.weight * float64(small)
			} else {
				out += t.weight * float64(total)
			}
		}
	}
	return out
}

// NodeFrag is the node's fragmentation (GPU milli) for the workload now.
func (w *Workload) NodeFrag(n *NodeState) float64 {
	if n.fragOwner == w && n.fragVersion == n.version {
		return n.frag
	}
	f := w.view(n.Info.GPUModel).frag(n.CPUFree, n.free)
	n.fragOwner, n.fragVersion, n.frag = w, n.version, f
	return f
}

// ClusterFrag sums NodeFrag over the cluster and also returns the free GPU
// milli, so frag/free is the fragmentation ratio.
func (w *Workload) ClusterFrag(s *State) (frag float64, free int64) {
	for i := range s.nodes {
		n := &s.nodes[i]
		frag += w.NodeFrag(n)
		free += n.totalFree
	}
	return frag, free
}

// fragAfter calls visit with the node's fragmentation after placing the
// request, once for each distinct way the request could sit on the node. Sharing requests
// try every distinct free level of the fitting GPUs (GPUs with the same free
// milli are interchangeable); whole-GPU and CPU-only requests have one way.
func fragAfter(v *modelView, n *NodeState, r *Request, visit func(after float64, gpus GPUSet)) {
	var buf [MaxGPUsPerNode]int64
	free := buf[:len(n.free)]
	copy(free, n.free)
	cpu := n.CPUFree - r.CPUMilli
	switch {
	case r.GPUs == 0:
		visit(v.frag(cpu, free), 0)
	case r.GPUMilli < MilliPerGPU:
		var tried [MaxGPUsPerNode]int64
		nt := 0
	next:
		for p, f := range n.free {
			if f < r.GPUMilli {
				continue
			}
			for _, t := range tried[:nt] {
				if t == f {
					continue next
				}
			}
			tried[nt] = f
			nt++
			free[p] = f - r.GPUMilli
			visit(v.frag(cpu, free), GPUSet(0).With(p))
			free[p] = f
		}
	default:
		g, _ := pickWhole(n, r.GPUs)
		for _, p := range g.Positions() {
			free[p] -= r.GPUMilli
		}
		visit(v.frag(cpu, free), g)
	}
}

// FGD is Fragmentation Gradient Descent (Weng et al., ATC'23): place a task
// where the workload's expected fragmentation grows least. As in the
// published scheduler plugin, the decrease in fragmentation is squashed to an
// integer score of 0..100 (sigmoid of the change in GPUs), so nodes within a
// few tens of milli of each other tie and the tie is broken at random.
type FGD struct {
	Workload *Workload
}

// Name implements Scorer.
func (f *FGD) Name() string { return "fgd" }

// Score implements Scorer.
func (f *FGD) Score(n *NodeState, r *Request) (float64, GPUSet) {
	v := f.Workload.view(n.Info.GPUModel)
	before := f.Workload.NodeFrag(n)
	best, bestGPUs := math.Inf(-1), GPUSet(0)
	fragAfter(v, n, r, func(after float64, gpus GPUSet) {
		if s := fgdScore(before, after); s > best {
			best, bestGPUs = s, gpus
		}
	})
	return best, bestGPUs
}

// fgdScore is the published FGD score: the fall in fragmentation, in GPUs,
// through a sigmoid onto an integer 0..100.
func fgdScore(before, after float64) float64 {
	return float64(int64(1 / (1 + math.Exp(-(before-after)/MilliPerGPU)) * 100))
}

// hosts counts the nodes that could ever host a task of type t (when idle):
// enough CPU, GPUs and an accepted model.
func hosts(t TaskType, nodes []NodeInfo) int {
	r := Request{Models: t.Models}
	c := 0
	for i := range nodes {
		n := &nodes[i]
		if n.CPUMilli >= t.CPUMilli && len(n.GPUs) >= t.GPUs && (t.GPUs == 0 || r.AcceptsModel(n.GPUModel)) {
			c++
		}
	}
	return c
}

func sameType(a, b TaskType) bool {
	return a.CPUMilli == b.CPUMilli && a.GPUs == b.GPUs && a.GPUMilli == b.GPUMilli && slices.Equal(a.Models, b.Models)
}

// WithScarce returns the workload plus every type of all that at most
// maxShare of the nodes could ever host, even a rare one, with its weight
// (theirs or the one already here) multiplied by nodes/hosts. A type only a
// few nodes can run is lost for good once those nodes are broken up, so its
// fragmentation counts as much as its scarcity says.
func (w *Workload) WithScarce(all *Workload, nodes []NodeInfo, maxShare float64) (*Workload, error) {
	types := slices.Clone(w.Types)
	for _, t := range all.Types {
		h := hosts(t, nodes)
		if h == 0 || float64(h) > maxShare*float64(len(nodes)) {
			continue
		}
		scale := float64(len(nodes)) / float64(h)
		if i := slices.IndexFunc(types, func(u TaskType) bool { return sameType(u, t) }); i >= 0 {
			types[i].Weight *= scale
			continue
		}
		t.Weight *= scale
		types = append(types, t)
	}
	return NewWorkload(types)
}

// Workload-estimation defaults.
const (
	// DefaultCoverage is the share of tasks whose types form the workload,
	// as in the FGD artifact's experiments.
	DefaultCoverage = 0.95
	// DefaultScarceShare bounds the share of nodes that may host a type for
	// Babelfish to count it as scarce.
	DefaultScarceShare = 0.1
)

// EstimateWorkload builds the workload a policy plans for from the tasks
// seen so far. Every policy gets the FGD artifact's estimate (the most
// popular types covering coverage of the tasks; 0 means DefaultCoverage);
// "babelfish" also keeps the types that few nodes can host (WithScarce).
func EstimateWorkload(policy string, reqs []Request, nodes []NodeInfo, coverage float64) (*Workload, error) {
	if coverage == 0 {
		coverage = DefaultCoverage
	}
	w, err := WorkloadFromRequests(reqs, coverage)
	if err != nil || policy != "babelfish" {
		return w, err
	}
	all, err := WorkloadFromRequests(reqs, 1)
	if err != nil {
		return nil, err
	}
	return w.WithScarce(all, nodes, DefaultScarceShare)
}
