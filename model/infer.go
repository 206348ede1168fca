package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/units"
)

// Input is one translation request: source speech (any rate; it is
// resampled) and the language to speak.
type Input struct {
	Audio      audio.Clip
	TargetLang string
}

// Output is one translation: speech at the model's rate and the unit
// sequence it was rendered from.
type Output struct {
	Audio audio.Clip
	Units units.Sequence
}

// DecodeOptions tune decoding. A zero field takes its default.
type DecodeOptions struct {
	// Beam is the beam width; 0 or 1 decodes greedily.
	Beam int
	// MaxSeconds bounds the output speech; 0 means no bound beyond
	// Config.MaxUnits.
	MaxSeconds float64
	// Vocoder renders the units with this vocoder (a Config.Vocoder value)
	// instead of the model's own; empty keeps the model's.
	Vocoder string
}

// maxBeam bounds the beam width a caller may ask for.
const maxBeam = 64

// Translate translates a batch, up to GOMAXPROCS inputs at a time; outputs
// are in input order. Every input is checked (target language, non-empty
// audio, options) before any compute; an unknown language is an
// *UnknownLanguageError listing the known ones. ctx is checked between
// inputs and during vocoding.
func (m *Model) Translate(ctx context.Context, ins []Input, opt DecodeOptions) ([]Output, error) {
	if opt.Beam < 0 || opt.Beam > maxBeam {
		return nil, fmt.Errorf("model: DecodeOptions.Beam is %d: want 0..%d", opt.Beam, maxBeam)
	}
	if opt.MaxSeconds < 0 || math.IsNaN(opt.MaxSeconds) {
		return nil, fmt.Errorf("model: DecodeOptions.MaxSeconds is %g: want >= 0", opt.MaxSeconds)
	}
	langs := make([]int, len(ins))
	for i, in := range ins {
		li, err := m.cfg.LangIndex(in.TargetLang)
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		if len(in.Audio.Samples) == 0 || in.Audio.Rate <= 0 {
			return nil, fmt.Errorf("input %d: model: audio is empty (%d samples at %d Hz)", i, len(in.Audio.Samples), in.Audio.Rate)
		}
		langs[i] = li
	}
	voc, err := m.VocoderOf(ctx, opt.Vocoder)
	if err != nil {
		return nil, err
	}
	// Three phases: the front end per input, the network for the whole
	// batch at once (greedy) or per input (beam), the vocoder per input.
	// Per-input phases spread over the cores; the batched network splits
	// the batch into one block of rows per core.
	xs := make([][]float32, len(ins))
	err = parallel(ctx, len(ins), func(i int) error {
		lm, err := m.front.LogMel(ins[i].Audio)
		if err != nil {
			return err
		}
		xs[i], err = m.EncoderInput(lm)
		return err
	})
	if err != nil {
		return nil, err
	}
	seqs := make([]units.Sequence, len(ins))
	maxFrames := m.maxFrames(opt)
	if opt.Beam <= 1 {
		per := (len(ins) + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
		blocks := (len(ins) + per - 1) / per
		err = parallel(ctx, blocks, func(b int) error {
			lo, hi := b*per, min(len(ins), (b+1)*per)
			copy(seqs[lo:hi], m.decodeGreedyBatch(xs[lo:hi], langs[lo:hi], maxFrames))
			return nil
		})
	} else {
		err = parallel(ctx, len(ins), func(i int) error {
			seqs[i] = m.Decode(xs[i], langs[i], opt)
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	out := make([]Output, len(ins))
	err = parallel(ctx, len(ins), func(i int) error {
		clip, err := voc.Synthesize(ctx, seqs[i])
		out[i] = Output{Audio: clip, Units: seqs[i]}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines and joins the
// errors, each naming its input; it stops handing out work once ctx ends,
// and then returns ctx's error.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	if n == 1 {
		// One input runs on the caller's goroutine: no handoff, and its
		// data stays in the cache of the core that made it.
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(0)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("input 0: %w", err)
		}
		return nil
	}
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range work {
				if err := fn(i); err != nil {
					errs[i] = fmt.Errorf("input %d: %w", i, err)
				}
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// maxFrames is the longest output in unit frames that opt allows.
func (m *Model) maxFrames(opt DecodeOptions) int {
	if opt.MaxSeconds <= 0 {
		return math.MaxInt
	}
	mc := m.cfg.Features.Mel
	return max(1, int(opt.MaxSeconds*float64(mc.SampleRate)/float64(mc.Hop*m.cfg.UnitStride)))
}

// Decode predicts the unit sequence for one encoder input (see
// EncoderInput) into language index lang.
func (m *Model) Decode(input []float32, lang int, opt DecodeOptions) units.Sequence {
	maxFrames := m.maxFrames(opt)
	base := m.decoderBase(m.encode(input), lang)
	if opt.Beam <= 1 {
		return m.greedy(base, maxFrames)
	}
	return m.beam(base, opt.Beam, maxFrames)
}

// linear computes y = x W + b for W (in x out, row-major) and b (1 x out):
// linearRows for one row.
func linear(y, x []float32, w, b Tensor) {
	linearRows(y, x, 1, w, b, newGemmScratch(1, w.Shape[0]))
}

// relu clamps x at zero without a branch on the data, which a predictor
// would miss about half the time; negative values (and -0) become +0.
func relu(x []float32) {
	for i, v := range x {
		b := math.Float32bits(v)
		x[i] = math.Float32frombits(b &^ uint32(int32(b)>>31))
	}
}

// encode runs the encoder MLP.
func (m *Model) encode(input []float32) []float32 {
	h := input
	for i := range m.cfg.EncoderHidden {
		w := m.params.must(fmt.Sprintf("enc.%d.w", i))
		b := m.params.must(fmt.Sprintf("enc.%d.b", i))
		y := make([]float32, w.Shape[1])
		linear(y, h, w, b)
		relu(y)
		h = y
	}
	return h
}

// decContext is the per-utterance part of the decoder's input layer.
type decContext struct{ add, gate []float32 }

// decoderBase computes the per-utterance context of an encoding for
// language index lang.
func (m *Model) decoderBase(enc []float32, lang int) decContext {
	c := m.cfg
	hc, hd := c.ContextHidden, c.DecoderHidden
	ctx := make([]float32, hc)
	linear(ctx, enc, m.params.must("ctx.w"), m.params.must("ctx.b"))
	le := m.params.must("ctx.lang").Data[lang*hc : (lang+1)*hc]
	for j := range ctx {
		ctx[j] += le[j]
	}
	relu(ctx)
	dc := decContext{add: make([]float32, hd), gate: make([]float32, hd)}
	linear(dc.add, ctx, m.params.must("dec.add.w"), m.params.must("dec.add.b"))
	linear(dc.gate, ctx, m.params.must("dec.gate.w"), m.params.must("dec.gate.b"))
	return dc
}

// step runs the decoder at position t after unit prev and returns the
// log-probabilities of the next unit (K units, then end) and the most
// likely duration (1..MaxDuration).
func (m *Model) step(base decContext, prev, t int) ([]float64, int) {
	lp, dur, _ := m.stepFull(base, prev, t)
	return lp, dur
}

// stepFull is step that also returns the duration log-probabilities.
func (m *Model) stepFull(base decContext, prev, t int) ([]float64, int, []float64) {
	c := m.cfg
	hd := c.DecoderHidden
	h := make([]float32, hd)
	pe := m.params.must("dec.prev").Data[prev*hd : (prev+1)*hd]
	po := m.params.must("dec.pos").Data[t*hd : (t+1)*hd]
	pg := m.params.must("dec.posgate").Data[t*hd : (t+1)*hd]
	for j := range h {
		h[j] = base.add[j] + base.gate[j]*pg[j] + pe[j] + po[j]
	}
	relu(h)
	for i := range c.DecoderLayers {
		y := make([]float32, hd)
		linear(y, h, m.params.must(fmt.Sprintf("dec.%d.w", i)), m.params.must(fmt.Sprintf("dec.%d.b", i)))
		relu(y)
		h = y
	}
	logits := make([]float32, c.Units+1)
	linear(logits, h, m.params.must("dec.unit.w"), m.params.must("dec.unit.b"))
	dl := make([]float32, c.MaxDuration)
	linear(dl, h, m.params.must("dec.dur.w"), m.params.must("dec.dur.b"))
	dur := 0
	for k, v := range dl {
		if v > dl[dur] {
			dur = k
		}
	}
	return logSoftmax(logits), dur + 1, logSoftmax(dl)
}

func logSoftmax(x []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

// greedy decodes the most likely unit at each step. A unit never repeats
// its predecessor: runs were collapsed in training targets.
func (m *Model) greedy(base decContext, maxFrames int) units.Sequence {
	c := m.cfg
	var seq units.Sequence
	prev, frames := c.bos(), 0
	// A target holds at most MaxUnits-1 units before its end marker.
	for t := 0; t < c.MaxUnits-1 && frames < maxFrames; t++ {
		lp, dur := m.step(base, prev, t)
		if prev < c.Units {
			lp[prev] = math.Inf(-1)
		}
		best := 0
		for k, v := range lp {
			if v > lp[best] {
				best = k
			}
		}
		if best == c.eos() {
			break
		}
		seq.Units = append(seq.Units, best)
		seq.Durations = append(seq.Durations, dur)
		frames += dur
		prev = best
	}
	return seq
}

type hyp struct {
	seq    units.Sequence
	logp   float64
	frames int
	done   bool
}

// beam keeps the width most likely partial sequences at each step; a
// finished sequence competes with unfinished ones on total log-probability.
func (m *Model) beam(base decContext, width, maxFrames int) units.Sequence {
	c := m.cfg
	beams := []hyp{{}}
	// A target holds at most MaxUnits-1 units before its end marker.
	for t := 0; t < c.MaxUnits-1; t++ {
		var next []hyp
		alive := false
		for _, h := range beams {
			if h.done {
				next = append(next, h)
				continue
			}
			alive = true
			prev := c.bos()
			if n := len(h.seq.Units); n > 0 {
				prev = h.seq.Units[n-1]
			}
			lp, dur := m.step(base, prev, t)
			if prev < c.Units {
				lp[prev] = math.Inf(-1)
			}
			for _, k := range topK(lp, width) {
				nh := hyp{logp: h.logp + lp[k], frames: h.frames}
				if k == c.eos() {
					nh.seq, nh.done = h.seq, true
				} else {
					nh.seq = appendUnit(h.seq, k, dur)
					nh.frames += dur
					nh.done = nh.frames >= maxFrames
				}
				next = append(next, nh)
			}
		}
		if !alive {
			break
		}
		sort.SliceStable(next, func(i, j int) bool { return next[i].logp > next[j].logp })
		beams = next[:min(width, len(next))]
	}
	return beams[0].seq
}

func appendUnit(s units.Sequence, u, d int) units.Sequence {
	n := len(s.Units)
	return units.Sequence{
		Units:     append(s.Units[:n:n], u),
		Durations: append(s.Durations[:n:n], d),
	}
}

// topK returns the indices of the k largest finite values, largest first.
func topK(x []float64, k int) []int {
	idx := make([]int, 0, len(x))
	for i, v := range x {
		if !math.IsInf(v, -1) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] > x[idx[b]] })
	return idx[:min(k, len(idx))]
}
