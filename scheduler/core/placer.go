package core

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
)

// Choice is where the placer would put a request.
type Choice struct {
	Node  *NodeState
	GPUs  GPUSet
	Score float64
}

// Placer runs the pipeline for one request at a time: filters, then the
// scorer, then a tie-break. It caches each node's verdict per request shape
// and recomputes it only when the node's version moves, so a stream of
// arrivals costs about one node evaluation per placement and shape.
//
// A Placer is not safe for concurrent use; it may be used with one State at
// a time (switching states drops the cache).
type Placer struct {
	filters []Filter
	scorer  Scorer
	rng     *rand.Rand
	rank    []int

	st     *State
	shapes map[Shape]int
	cache  [][]verdict
}

type verdict struct {
	version uint64
	ok      bool
	score   float64
	gpus    GPUSet
}

// PlacerOption configures a Placer.
type PlacerOption func(*Placer)

// WithRand breaks ties between equally scored nodes at random from r, as
// kube-scheduler does. Without it ties go to the first node.
func WithRand(r *rand.Rand) PlacerOption { return func(p *Placer) { p.rng = r } }

// WithNodeOrder breaks ties by a fixed node order: of equally scored
// nodes, the one with the lowest rank[position] wins. The FGD artifact's
// scheduler does this (the smallest name wins, and names carry a seeded
// random prefix), which packs ties onto the same nodes. It overrides
// WithRand. Without either, ties go to the lowest position.
func WithNodeOrder(rank []int) PlacerOption { return func(p *Placer) { p.rank = rank } }

// WithFilters replaces the feasibility pipeline.
func WithFilters(f ...Filter) PlacerOption { return func(p *Placer) { p.filters = f } }

// NewPlacer returns a placer ranking nodes with s.
func NewPlacer(s Scorer, opts ...PlacerOption) *Placer {
	p := &Placer{filters: DefaultFilters(), scorer: s}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Scorer is the placer's scorer.
func (p *Placer) Scorer() Scorer { return p.scorer }

func (p *Placer) verdicts(st *State, r *Request) []verdict {
	if p.st != st {
		p.st, p.shapes, p.cache = st, map[Shape]int{}, nil
	}
	sh := r.Shape()
	i, ok := p.shapes[sh]
	if !ok {
		i = len(p.cache)
		p.shapes[sh] = i
		p.cache = append(p.cache, make([]verdict, st.Len()))
	}
	return p.cache[i]
}

// Best finds the best feasible node for r among those allow accepts (nil
// accepts all) without changing the state.
func (p *Placer) Best(st *State, r *Request, allow func(*NodeState) bool) (Choice, bool) {
	vs := p.verdicts(st, r)
	var best Choice
	ties := 0
	for i := range st.nodes {
		n := &st.nodes[i]
		v := &vs[i]
		if v.version != n.version {
			*v = verdict{version: n.version}
			if ok, _ := feasible(p.filters, n, r); ok {
				v.ok = true
				v.score, v.gpus = p.scorer.Score(n, r)
			}
		}
		if !v.ok || (allow != nil && !allow(n)) {
			continue
		}
		switch {
		case ties == 0 || v.score > best.Score:
			best, ties = Choice{Node: n, GPUs: v.gpus, Score: v.score}, 1
		case v.score == best.Score:
			ties++
			switch {
			case p.rank != nil:
				if p.rank[i] < p.rank[best.Node.pos] {
					best = Choice{Node: n, GPUs: v.gpus, Score: v.score}
				}
			case p.rng != nil:
				// Reservoir sampling: each tied node wins with equal chance.
				if p.rng.Intn(ties) == 0 {
					best = Choice{Node: n, GPUs: v.gpus, Score: v.score}
				}
			}
		}
	}
	return best, ties > 0
}

// Place binds r to the best node and applies the binding to the state.
func (p *Placer) Place(st *State, job string, worker int, r *Request) (Binding, error) {
	c, ok := p.Best(st, r, nil)
	if !ok {
		return Binding{}, fmt.Errorf("job %s worker %d: %s", job, worker, Explain(st, p.filters, r))
	}
	b := st.Bind(job, worker, c.Node, r, c.GPUs)
	if err := st.Apply(b); err != nil {
		return Binding{}, err
	}
	return b, nil
}

// Explain says why no node can host r: how many nodes each filter rejected.
func Explain(st *State, filters []Filter, r *Request) string {
	counts := map[string]int{}
	var names []string
	for i := range st.nodes {
		if ok, why := feasible(filters, &st.nodes[i], r); !ok {
			if counts[why] == 0 {
				names = append(names, why)
			}
			counts[why]++
		}
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%d %s", counts[n], n))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("0/%d nodes fit", st.Len())
	}
	return fmt.Sprintf("0/%d nodes fit (%s)", st.Len(), strings.Join(parts, ", "))
}
