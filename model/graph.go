package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Graph computes summed losses and gradients for batches of a fixed size on
// one static gorgonia graph. Its learnable nodes are backed by the model's
// Params.Flat, so an optimizer update of Flat is seen by the next call. A
// Graph is not safe for concurrent use; make one per goroutine.
type Graph struct {
	m                *Model
	batch, positions int
	// forwardOnly graphs have no gradient nodes (NewLossGraph).
	forwardOnly bool

	g  *G.ExprGraph
	vm G.VM

	// Inputs, rebuilt for every batch.
	x, lang, tgt, dur             *G.Node
	repIdx, prevIdx, posIdx       *G.Node
	inX, inLang, inTgt, inDur     *tensor.Dense
	inRepIdx, inPrevIdx, inPosIdx *tensor.Dense

	rowWant []int // each row's target token, -1 for padding

	learn                     []*G.Node
	unitLoss, durLoss, logits *G.Node
	unitLossV, durLossV       G.Value
	logitsV                   G.Value
}

// Sums are a batch's summed figures: losses in nats summed over tokens and
// examples, so ranks add theirs and divide by the global example count.
type Sums struct {
	// Loss = UnitLoss + DurationWeight * DurLoss.
	Loss, UnitLoss, DurLoss float64
	// Examples and Tokens (units plus end markers) counted.
	Examples, Tokens int
	// Scored is how many positions the graph scored (all of them, or a
	// sample when a target is longer than the graph's positions) and
	// Correct how many of those had the right teacher-forced argmax.
	Scored, Correct int
}

// Add adds o to s.
func (s *Sums) Add(o Sums) {
	s.Loss += o.Loss
	s.UnitLoss += o.UnitLoss
	s.DurLoss += o.DurLoss
	s.Examples += o.Examples
	s.Tokens += o.Tokens
	s.Scored += o.Scored
	s.Correct += o.Correct
}

// NewGraph builds the training graph for batches of up to batch examples,
// scoring up to positions target positions (end marker included) of each;
// 0 means Config.MaxUnits, which scores every position: the exact summed
// loss. A target with more positions than that has a sample of them scored
// (drawn from Example.Seed), each weighted so that the loss and gradient are
// unbiased estimates of the full sums; teacher forcing makes positions
// independent given the previous unit, so any subset can be scored. Fewer
// positions per example buy more examples per step for the same work.
func (m *Model) NewGraph(batch, positions int) (*Graph, error) {
	return m.newGraph(batch, positions, false)
}

// NewLossGraph builds the same graph as NewGraph without its gradient
// nodes: Loss runs the forward pass alone (what a benchmark times to split
// a step into forward and backward, or an evaluation of the loss).
func (m *Model) NewLossGraph(batch, positions int) (*Graph, error) {
	return m.newGraph(batch, positions, true)
}

// graphBuild serialises graph construction: gorgonia keeps unguarded
// package-level counters (internal/encoding's group ids) that building
// graphs in several goroutines at once races on (ranks of one process,
// tests). Running built graphs needs no lock.
var graphBuild sync.Mutex

func (m *Model) newGraph(batch, positions int, forwardOnly bool) (*Graph, error) {
	graphBuild.Lock()
	defer graphBuild.Unlock()
	if batch < 1 || batch > 1<<16 {
		return nil, fmt.Errorf("model: graph batch size %d: want 1..65536", batch)
	}
	c := m.cfg
	if positions == 0 {
		positions = c.MaxUnits
	}
	if positions < 1 || positions > c.MaxUnits {
		return nil, fmt.Errorf("model: graph positions %d: want 1..%d (Config.MaxUnits)", positions, c.MaxUnits)
	}
	n := batch * positions
	gr := &Graph{m: m, batch: batch, positions: positions, forwardOnly: forwardOnly, g: G.NewGraph()}
	g := gr.g
	dense := func(r, cols int) *tensor.Dense {
		return tensor.New(tensor.WithShape(r, cols), tensor.WithBacking(make([]float32, r*cols)))
	}
	input := func(name string, t *tensor.Dense) *G.Node {
		return G.NewMatrix(g, G.Float32, G.WithShape(t.Shape()...), G.WithName(name), G.WithValue(t))
	}
	gr.inX = dense(batch, c.InputSize())
	gr.inLang = dense(batch, len(c.Languages))
	gr.inTgt = dense(n, c.Units+1)
	gr.inDur = dense(n, c.MaxDuration)
	ints := func(name string) (*tensor.Dense, *G.Node) {
		t := tensor.New(tensor.WithShape(n), tensor.WithBacking(make([]int, n)))
		return t, G.NewVector(g, tensor.Int, G.WithShape(n), G.WithName(name), G.WithValue(t))
	}
	gr.inRepIdx, gr.repIdx = ints("repIdx")
	gr.inPrevIdx, gr.prevIdx = ints("prevIdx")
	gr.inPosIdx, gr.posIdx = ints("posIdx")
	gr.x = input("x", gr.inX)
	gr.lang = input("lang", gr.inLang)
	gr.tgt = input("tgt", gr.inTgt)
	gr.dur = input("dur", gr.inDur)

	nodes := map[string]*G.Node{}
	for _, t := range m.params.Tensors {
		v := tensor.New(tensor.WithShape(t.Shape...), tensor.WithBacking(t.Data))
		nd := G.NewMatrix(g, G.Float32, G.WithShape(t.Shape...), G.WithName(t.Name), G.WithValue(v))
		nodes[t.Name] = nd
		gr.learn = append(gr.learn, nd)
	}
	if err := gr.build(nodes); err != nil {
		return nil, err
	}
	if forwardOnly {
		gr.vm = G.NewTapeMachine(g)
		return gr, nil
	}
	if _, err := G.Grad(gr.lossNode(), gr.learn...); err != nil {
		return nil, fmt.Errorf("model: building gradients: %w", err)
	}
	gr.vm = G.NewTapeMachine(g, G.BindDualValues(gr.learn...))
	return gr, nil
}

// lossNode is the node the gradient is taken of.
func (gr *Graph) lossNode() *G.Node { return gr.g.ByName("loss")[0] }

func (gr *Graph) build(p map[string]*G.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("model: building graph: %v", r)
		}
	}()
	c := gr.m.cfg
	affine := func(x *G.Node, name string) *G.Node {
		return G.Must(G.BroadcastAdd(G.Must(G.Mul(x, p[name+".w"])), p[name+".b"], nil, []byte{0}))
	}
	h := gr.x
	for i := range c.EncoderHidden {
		h = G.Must(G.Rectify(affine(h, fmt.Sprintf("enc.%d", i))))
	}
	// Per-utterance context: encoding joined with the target language. It
	// runs on one row per example, so it can afford to be wide.
	ctx := G.Must(G.Rectify(G.Must(G.Add(affine(h, "ctx"), G.Must(G.Mul(gr.lang, p["ctx.lang"]))))))
	add, gate := affine(ctx, "dec.add"), affine(ctx, "dec.gate")
	// Per position: the context, plus the context gated by a position
	// embedding (a bilinear context x position term, so "which unit comes
	// at position t of this phrase" is one product away), plus position
	// and previous-unit embeddings. Gathers (whose gradients scatter-add)
	// replace one-hot products: the same sums for a fraction of the work.
	d := G.Must(G.ByIndices(add, gr.repIdx, 0))
	gated := G.Must(G.HadamardProd(G.Must(G.ByIndices(gate, gr.repIdx, 0)), G.Must(G.ByIndices(p["dec.posgate"], gr.posIdx, 0))))
	d = G.Must(G.Add(d, gated))
	d = G.Must(G.Add(d, G.Must(G.ByIndices(p["dec.prev"], gr.prevIdx, 0))))
	d = G.Must(G.Add(d, G.Must(G.ByIndices(p["dec.pos"], gr.posIdx, 0))))
	d = G.Must(G.Rectify(d))
	for i := range c.DecoderLayers {
		d = G.Must(G.Rectify(affine(d, fmt.Sprintf("dec.%d", i))))
	}
	gr.logits = affine(d, "dec.unit")
	ul := G.Must(softmaxXent(gr.logits, gr.tgt))
	dl := G.Must(softmaxXent(affine(d, "dec.dur"), gr.dur))
	w := G.NewConstant(float32(c.DurationWeight))
	loss := G.Must(G.Add(ul, G.Must(G.HadamardProd(dl, w))))
	G.WithName("loss")(loss)
	gr.unitLoss, gr.durLoss = ul, dl
	G.Read(ul, &gr.unitLossV)
	G.Read(dl, &gr.durLossV)
	G.Read(gr.logits, &gr.logitsV)
	return nil
}

// Batch is the graph's batch size.
func (gr *Graph) Batch() int { return gr.batch }

// Positions is how many target positions (end marker included) the graph
// scores per example.
func (gr *Graph) Positions() int { return gr.positions }

// Gradients runs forward and backward over exs (at most Batch examples; a
// short batch is padded with masked rows that contribute nothing) and
// writes the gradient of the summed loss into grads (len Params.Size(), in
// the Params.Flat layout, overwritten).
func (gr *Graph) Gradients(exs []Example, grads []float32) (Sums, error) {
	m := gr.m
	if gr.forwardOnly {
		return Sums{}, fmt.Errorf("model: Gradients on a loss-only graph (NewLossGraph): use NewGraph")
	}
	if len(grads) != m.params.Size() {
		return Sums{}, fmt.Errorf("model: gradient buffer has %d values: want %d", len(grads), m.params.Size())
	}
	tokens, err := gr.run(exs)
	defer gr.vm.Reset()
	if err != nil {
		return Sums{}, err
	}
	off := 0
	for _, nd := range gr.learn {
		gv, err := nd.Grad()
		if err != nil {
			return Sums{}, fmt.Errorf("model: gradient of %s: %w", nd.Name(), err)
		}
		gt, ok := gv.(tensor.Tensor)
		if !ok {
			return Sums{}, fmt.Errorf("model: gradient of %s is a %T", nd.Name(), gv)
		}
		src := gt.Data().([]float32)
		copy(grads[off:off+len(src)], src)
		off += len(src)
		// The machine adds into bound gradients; start the next run at zero.
		gt.Zero()
	}
	return gr.sums(len(exs), tokens)
}

// Loss runs the forward pass alone over exs (at most Batch examples) and
// returns the summed figures, as Gradients would.
func (gr *Graph) Loss(exs []Example) (Sums, error) {
	tokens, err := gr.run(exs)
	defer gr.vm.Reset()
	if err != nil {
		return Sums{}, err
	}
	return gr.sums(len(exs), tokens)
}

// run checks and fills the batch and runs the machine.
func (gr *Graph) run(exs []Example) (int, error) {
	if len(exs) > gr.batch {
		return 0, fmt.Errorf("model: %d examples for a graph of batch %d", len(exs), gr.batch)
	}
	for i, ex := range exs {
		if err := gr.m.checkExample(ex); err != nil {
			return 0, fmt.Errorf("example %d: %w", i, err)
		}
	}
	tokens := gr.fill(exs)
	if err := gr.vm.RunAll(); err != nil {
		return 0, fmt.Errorf("model: forward/backward: %w", err)
	}
	return tokens, nil
}

func (gr *Graph) sums(examples, tokens int) (Sums, error) {
	s := Sums{
		UnitLoss: float64(gr.unitLossV.Data().(float32)),
		DurLoss:  float64(gr.durLossV.Data().(float32)),
		Examples: examples,
		Tokens:   tokens,
	}
	s.Loss = s.UnitLoss + gr.m.cfg.DurationWeight*s.DurLoss
	s.Correct, s.Scored = gr.correct()
	if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) {
		return s, fmt.Errorf("model: loss is %g", s.Loss)
	}
	return s, nil
}

// fill writes the batch into the input tensors and returns its token
// count (every target position of every example, sampled or not).
func (gr *Graph) fill(exs []Example) int {
	c := gr.m.cfg
	P := gr.positions
	x := gr.inX.Data().([]float32)
	lang := gr.inLang.Data().([]float32)
	tgt := gr.inTgt.Data().([]float32)
	dur := gr.inDur.Data().([]float32)
	for _, s := range [][]float32{x, lang, tgt, dur} {
		clear(s)
	}
	nl, kt, nd := len(c.Languages), c.Units+1, c.MaxDuration
	repIdx := gr.inRepIdx.Data().([]int)
	prevIdx := gr.inPrevIdx.Data().([]int)
	posIdx := gr.inPosIdx.Data().([]int)
	if len(gr.rowWant) != gr.batch*P {
		gr.rowWant = make([]int, gr.batch*P)
	}
	tokens := 0
	pos := make([]int, 0, c.MaxUnits)
	for b := range gr.batch {
		for j := range P {
			r := b*P + j
			repIdx[r] = b
			posIdx[r] = 0
			prevIdx[r] = c.bos()
			gr.rowWant[r] = -1
		}
		if b >= len(exs) {
			continue // padding: no input, no targets
		}
		ex := exs[b]
		copy(x[b*c.InputSize():], ex.Input)
		lang[b*nl+ex.Target] = 1
		us := ex.Units.Units
		n := len(us) + 1 // positions with a target, end marker included
		tokens += n
		pos = pos[:0]
		for t := range n {
			pos = append(pos, t)
		}
		w := float32(1)
		if n > P {
			// Score P positions drawn without replacement, each weighted
			// n/P: an unbiased estimate of the example's summed loss.
			rng := rand.New(rand.NewPCG(ex.Seed, 0x706f736974696f6e))
			for j := range P {
				k := j + rng.IntN(n-j)
				pos[j], pos[k] = pos[k], pos[j]
			}
			pos = pos[:P]
			w = float32(n) / float32(P)
		}
		for j, t := range pos {
			r := b*P + j
			posIdx[r] = t
			p := c.bos()
			if t > 0 {
				p = us[t-1]
			}
			if t > 0 && c.PrevDropout > 0 && uniform(ex.Seed, t) < c.PrevDropout {
				p = c.mask()
			}
			prevIdx[r] = p
			if t < len(us) {
				tgt[r*kt+us[t]] = w
				dur[r*nd+ex.Units.Durations[t]-1] = w
				gr.rowWant[r] = us[t]
			} else {
				tgt[r*kt+c.eos()] = w
				gr.rowWant[r] = c.eos()
			}
		}
	}
	return tokens
}

// correct counts scored rows whose logit argmax is the target, and the
// rows scored.
func (gr *Graph) correct() (correct, scored int) {
	kt := gr.m.cfg.Units + 1
	lg := gr.logitsV.Data().([]float32)
	for r, want := range gr.rowWant {
		if want < 0 {
			continue
		}
		scored++
		row := lg[r*kt : (r+1)*kt]
		best := 0
		for k, v := range row {
			if v > row[best] {
				best = k
			}
		}
		if best == want {
			correct++
		}
	}
	return correct, scored
}

// uniform is a value in [0, 1) that depends only on seed and i
// (SplitMix64), so noise is the same whichever rank computes it.
func uniform(seed uint64, i int) float64 {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
