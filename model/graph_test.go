package model

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// teacherForcedLoss recomputes the summed unit and duration losses of exs
// with the plain-Go inference path.
func teacherForcedLoss(m *Model, exs []Example) (unit, dur float64) {
	c := m.cfg
	for _, ex := range exs {
		base := m.decoderBase(m.encode(ex.Input), ex.Target)
		prev := c.bos()
		for t := 0; t <= len(ex.Units.Units); t++ {
			if t > 0 && c.PrevDropout > 0 && uniform(ex.Seed, t) < c.PrevDropout {
				prev = c.mask()
			}
			lp, _, dl := m.stepFull(base, prev, t)
			if t == len(ex.Units.Units) {
				unit -= lp[c.eos()]
				break
			}
			u := ex.Units.Units[t]
			unit -= lp[u]
			dur -= dl[ex.Units.Durations[t]-1]
			prev = u
		}
	}
	return unit, dur
}

func TestGraphMatchesInference(t *testing.T) {
	for _, drop := range []float64{0, 0.5} {
		t.Run(fmt.Sprintf("prev dropout %g", drop), func(t *testing.T) {
			m, exs, _ := toySetup(t, func(c *Config) { c.PrevDropout = drop })
			graphMatchesInference(t, m, exs)
		})
	}
}

func graphMatchesInference(t *testing.T, m *Model, exs []Example) {
	g, err := m.NewGraph(5, 0)
	if err != nil {
		t.Fatal(err)
	}
	grads := make([]float32, m.Params().Size())
	for _, batch := range [][]Example{exs[:5], exs[7:10], exs[20:21]} {
		s, err := g.Gradients(batch, grads)
		if err != nil {
			t.Fatal(err)
		}
		u, d := teacherForcedLoss(m, batch)
		if rel(s.UnitLoss, u) > 1e-4 || rel(s.DurLoss, d) > 1e-4 {
			t.Errorf("batch of %d: graph losses %.6f/%.6f, inference path %.6f/%.6f", len(batch), s.UnitLoss, s.DurLoss, u, d)
		}
		want := 0
		for _, ex := range batch {
			want += len(ex.Units.Units) + 1
		}
		if s.Tokens != want || s.Examples != len(batch) {
			t.Errorf("counted %d tokens / %d examples, want %d / %d", s.Tokens, s.Examples, want, len(batch))
		}
	}
}

func rel(a, b float64) float64 {
	return math.Abs(a-b) / math.Max(1e-12, math.Max(math.Abs(a), math.Abs(b)))
}

func TestHalfBatchGradientsSumToFullBatch(t *testing.T) {
	m, exs, _ := toySetup(t, nil)
	full, err := m.NewGraph(8, 0)
	if err != nil {
		t.Fatal(err)
	}
	half, err := m.NewGraph(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := m.Params().Size()
	gf, ga, gb := make([]float32, n), make([]float32, n), make([]float32, n)
	for _, off := range []int{0, 16, 40} {
		batch := exs[off : off+8]
		sf, err := full.Gradients(batch, gf)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := half.Gradients(batch[:4], ga)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := half.Gradients(batch[4:], gb)
		if err != nil {
			t.Fatal(err)
		}
		if r := rel(sf.Loss, sa.Loss+sb.Loss); r > 1e-5 {
			t.Errorf("offset %d: full-batch loss %g, halves sum to %g (rel %g)", off, sf.Loss, sa.Loss+sb.Loss, r)
		}
		if sf.Tokens != sa.Tokens+sb.Tokens || sf.Examples != 8 {
			t.Errorf("offset %d: token counts %d vs %d+%d", off, sf.Tokens, sa.Tokens, sb.Tokens)
		}
		var diff, norm float64
		for i := range gf {
			d := float64(gf[i]) - float64(ga[i]+gb[i])
			diff += d * d
			norm += float64(gf[i]) * float64(gf[i])
		}
		if r := math.Sqrt(diff / norm); r > 1e-5 || norm == 0 {
			t.Errorf("offset %d: |g_full - (g_a+g_b)| / |g_full| = %g (|g_full|^2 = %g), want <= 1e-5", off, r, norm)
		}
	}
}

func TestPaddingContributesNothing(t *testing.T) {
	m, exs, _ := toySetup(t, nil)
	g3, _ := m.NewGraph(3, 0)
	g7, _ := m.NewGraph(7, 0)
	n := m.Params().Size()
	a, b := make([]float32, n), make([]float32, n)
	sa, err := g3.Gradients(exs[:3], a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := g7.Gradients(exs[:3], b)
	if err != nil {
		t.Fatal(err)
	}
	if rel(sa.Loss, sb.Loss) > 1e-6 {
		t.Errorf("padded batch loss %g, unpadded %g", sb.Loss, sa.Loss)
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5*(1+math.Abs(float64(a[i]))) {
			t.Fatalf("gradient %d: padded %g, unpadded %g", i, b[i], a[i])
		}
	}
	// A graph just long enough for the batch (a length bucket) agrees too.
	need := 0
	for _, ex := range exs[:3] {
		need = max(need, len(ex.Units.Units)+1)
	}
	short, err := m.NewGraph(3, need)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := short.Gradients(exs[:3], b)
	if err != nil {
		t.Fatal(err)
	}
	if rel(sa.Loss, ss.Loss) > 1e-6 || ss.Scored != sa.Tokens {
		t.Errorf("%d-position graph loss %g over %d scored, full-length %g over %d", need, ss.Loss, ss.Scored, sa.Loss, sa.Tokens)
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5*(1+math.Abs(float64(a[i]))) {
			t.Fatalf("gradient %d: %d-position graph %g, full-length %g", i, need, b[i], a[i])
		}
	}
	if _, err := m.NewGraph(3, m.Config().MaxUnits+1); err == nil {
		t.Error("a graph with more positions than MaxUnits was built")
	}
}

// TestSampledPositionsAreUnbiased checks that scoring a sample of each
// target's positions estimates the full summed loss without bias.
func TestSampledPositionsAreUnbiased(t *testing.T) {
	m, exs, _ := toySetup(t, nil)
	full, _ := m.NewGraph(4, 0)
	sampled, _ := m.NewGraph(4, 4)
	grads := make([]float32, m.Params().Size())
	batch := slices.Clone(exs[10:14])
	want, err := full.Gradients(batch, grads)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	const draws = 300
	for d := range draws {
		for i := range batch {
			batch[i].Seed = uint64(d*len(batch) + i)
		}
		s, err := sampled.Gradients(batch, grads)
		if err != nil {
			t.Fatal(err)
		}
		if s.Tokens != want.Tokens || s.Scored != 16 {
			t.Fatalf("sampled graph counted %d tokens, scored %d: want %d and 16", s.Tokens, s.Scored, want.Tokens)
		}
		sum += s.UnitLoss
	}
	// The toy config has no previous-unit dropout, so the seeds change
	// only which positions are scored.
	if r := rel(sum/draws, want.UnitLoss); r > 0.03 {
		t.Errorf("mean sampled unit loss %g, full %g (rel %g)", sum/draws, want.UnitLoss, r)
	}
}

func TestGradientsMatchFiniteDifferences(t *testing.T) {
	m, exs, _ := toySetup(t, func(c *Config) { c.DurationWeight = 0.7 })
	g, _ := m.NewGraph(4, 0)
	grads := make([]float32, m.Params().Size())
	batch := exs[3:7]
	if _, err := g.Gradients(batch, grads); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		u, d := teacherForcedLoss(m, batch)
		return u + 0.7*d
	}
	flat := m.Params().Flat
	checked := 0
	for _, tn := range m.Params().Tensors {
		// The largest-gradient coordinate of each tensor: well above float32 noise.
		off := 0
		for _, t2 := range m.Params().Tensors {
			if t2.Name == tn.Name {
				break
			}
			off += len(t2.Data)
		}
		best := off
		for i := off; i < off+len(tn.Data); i++ {
			if math.Abs(float64(grads[i])) > math.Abs(float64(grads[best])) {
				best = i
			}
		}
		if math.Abs(float64(grads[best])) < 1e-2 {
			continue
		}
		const h = 1e-2
		orig := flat[best]
		flat[best] = orig + h
		up := loss()
		flat[best] = orig - h
		down := loss()
		flat[best] = orig
		fd := (up - down) / (2 * h)
		if math.Abs(fd-float64(grads[best])) > 0.05*math.Abs(fd)+1e-2 {
			t.Errorf("%s: analytic gradient %g, finite difference %g", tn.Name, grads[best], fd)
		}
		checked++
	}
	if checked < len(m.Params().Tensors)/2 {
		t.Errorf("only %d of %d tensors had a gradient worth checking", checked, len(m.Params().Tensors))
	}
}

func TestSoftmaxXent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		logits  []float32 // 2 x 3
		targets []float32
		want    float64
		grad    []float64
	}{
		{"uniform", []float32{0, 0, 0, 1, 1, 1}, []float32{1, 0, 0, 0, 0, 1}, 2 * math.Log(3),
			[]float64{1.0/3 - 1, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0/3 - 1}},
		{"padding row", []float32{0, 0, 0, 5, -5, 2}, []float32{0, 1, 0, 0, 0, 0}, math.Log(3),
			[]float64{1.0 / 3, 1.0/3 - 1, 1.0 / 3, 0, 0, 0}},
		// A row whose leading logit is far above the matrix's first
		// element: gorgonia's own float32 log-softmax overflows here.
		{"large leading logit", []float32{-100, 0, 0, 500, 0, 0}, []float32{1, 0, 0, 1, 0, 0}, 100 + math.Log(2+math.Exp(-100)),
			[]float64{-1, 0.5, 0.5, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := G.NewGraph()
			x := G.NewMatrix(g, G.Float32, G.WithShape(2, 3), G.WithName("x"), G.WithValue(tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(slices.Clone(tc.logits)))))
			y := G.NewMatrix(g, G.Float32, G.WithShape(2, 3), G.WithName("y"), G.WithValue(tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(slices.Clone(tc.targets)))))
			loss := G.Must(softmaxXent(x, y))
			if _, err := G.Grad(loss, x); err != nil {
				t.Fatal(err)
			}
			vm := G.NewTapeMachine(g, G.BindDualValues(x))
			defer vm.Close()
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			if got := float64(loss.Value().Data().(float32)); math.Abs(got-tc.want) > 1e-4*(1+tc.want) {
				t.Errorf("loss %g, want %g", got, tc.want)
			}
			gv, err := x.Grad()
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range gv.Data().([]float32) {
				if math.Abs(float64(v)-tc.grad[i]) > 1e-5 {
					t.Errorf("grad[%d] = %g, want %g", i, v, tc.grad[i])
				}
			}
		})
	}
}

// TestLossGraphMatchesGradients checks that the forward-only graph gives
// the training graph's figures, and refuses gradients.
func TestLossGraphMatchesGradients(t *testing.T) {
	m, exs, _ := toySetup(t, nil)
	for _, positions := range []int{0, 2} {
		train, err := m.NewGraph(4, positions)
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := m.NewLossGraph(4, positions)
		if err != nil {
			t.Fatal(err)
		}
		grads := make([]float32, m.Params().Size())
		want, err := train.Gradients(exs[:4], grads)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a second run sees the same state
			got, err := fwd.Loss(exs[:4])
			if err != nil {
				t.Fatal(err)
			}
			if rel(got.Loss, want.Loss) > 1e-6 || got.Scored != want.Scored || got.Correct != want.Correct || got.Tokens != want.Tokens {
				t.Errorf("positions %d: loss graph %+v, training graph %+v", positions, got, want)
			}
		}
		if _, err := fwd.Gradients(exs[:4], grads); err == nil || !strings.Contains(err.Error(), "loss-only") {
			t.Errorf("gradients of a loss-only graph: %v", err)
		}
	}
}
