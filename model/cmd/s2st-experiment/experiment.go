package main

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/eval"
	"babelfish.dev/babelfish/model/features"
	"babelfish.dev/babelfish/model/units"
)

type key struct{ lang, phrase string }

// prep holds the corpus as features.
type prep struct {
	cd         *corpusData
	front      *features.Frontend
	logMel     []audio.Spectrogram
	canon      map[key]int
	trainVar   map[string]bool
	heldPhrase map[string]bool
	heldPair   map[[2]string]bool
	templates  *eval.Templates
}

// pair is one translation: source utterance index and target language.
type pair struct {
	src    int
	target string
}

func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func prepare(cd *corpusData, o options) (*prep, error) {
	front, err := features.NewFrontend(features.Config{})
	if err != nil {
		return nil, err
	}
	p := &prep{cd: cd, front: front, logMel: make([]audio.Spectrogram, len(cd.Utts)), canon: map[key]int{},
		trainVar: map[string]bool{}, heldPhrase: map[string]bool{}, heldPair: map[[2]string]bool{}, templates: eval.NewTemplates()}
	for _, v := range cd.Spec.TrainVariants {
		p.trainVar[v] = true
	}
	for _, h := range o.heldPhrases {
		if !slices.Contains(cd.Phrases, h) {
			return nil, fmt.Errorf("held-out phrase %q is not in the corpus", h)
		}
		p.heldPhrase[h] = true
	}
	var dirs [][2]string
	for _, a := range o.langs {
		for _, b := range o.langs {
			if a != b {
				dirs = append(dirs, [2]string{a, b})
			}
		}
	}
	rng := rand.New(rand.NewPCG(o.seed, 99))
	rng.Shuffle(len(dirs), func(i, j int) { dirs[i], dirs[j] = dirs[j], dirs[i] })
	for _, d := range dirs[:min(o.heldPairs, len(dirs))] {
		p.heldPair[d] = true
	}
	errs := make([]error, len(cd.Utts))
	if o.featCache == "" || !readFeatures(o.featCache, p.logMel) {
		parallel(len(cd.Utts), 2, func(i int) {
			p.logMel[i], errs[i] = front.LogMel(cd.Utts[i].clip(cd.Spec.Rate))
		})
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if o.featCache != "" {
			if err := writeFeatures(o.featCache, p.logMel); err != nil {
				return nil, err
			}
		}
	}
	for i, u := range cd.Utts {
		if u.Canon {
			p.canon[key{u.Lang, u.Phrase}] = i
			if err := p.templates.Add(u.Lang, u.Phrase, p.logMel[i]); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func (p *prep) heldPairsList() []string {
	var out []string
	for d := range p.heldPair {
		out = append(out, d[0]+"->"+d[1])
	}
	sort.Strings(out)
	return out
}

// learnUnits runs k-means over canonical renderings of training phrases.
func (p *prep) learnUnits(ctx context.Context, o options) (*units.Codebook, error) {
	var frames []float32
	for k, i := range p.canon {
		if p.heldPhrase[k.phrase] {
			continue
		}
		frames = append(frames, units.PoolFrames(p.logMel[i], o.stride).Data...)
	}
	// Map iteration order is random: sort rows so k-means sees a fixed order.
	dim := p.logMel[0].Bins
	n := len(frames) / dim
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		ra, rb := frames[idx[a]*dim:(idx[a]+1)*dim], frames[idx[b]*dim:(idx[b]+1)*dim]
		for j := range ra {
			if ra[j] != rb[j] {
				return ra[j] < rb[j]
			}
		}
		return false
	})
	sorted := make([]float32, 0, len(frames))
	for _, i := range idx {
		sorted = append(sorted, frames[i*dim:(i+1)*dim]...)
	}
	start := time.Now()
	cb, err := units.KMeans(ctx, sorted, dim, units.KMeansConfig{K: o.units, Seed: o.seed})
	if err != nil {
		return nil, err
	}
	slog.Info("units learned", "k", o.units, "frames", n, "took", time.Since(start).Round(time.Millisecond))
	return cb, nil
}

func experiment(ctx context.Context, cd *corpusData, o options) error {
	t0 := time.Now()
	p, err := prepare(cd, o)
	if err != nil {
		return err
	}
	slog.Info("features ready", "took", time.Since(t0).Round(time.Second), "held_pairs", p.heldPairsList())

	var m *model.Model
	if o.diagNN {
		return diagNN(p, o)
	}
	if o.load != "" && o.diagDecode {
		f, err := os.Open(o.load)
		if err != nil {
			return err
		}
		m, err = model.Load(f)
		f.Close()
		if err != nil {
			return err
		}
		return diagDecode(p, m, o)
	}
	if o.load != "" {
		f, err := os.Open(o.load)
		if err != nil {
			return err
		}
		m, err = model.Load(f)
		f.Close()
		if err != nil {
			return err
		}
	} else {
		cb, err := p.learnUnits(ctx, o)
		if err != nil {
			return err
		}
		cfg := model.DefaultConfig(o.langs)
		cfg.Units, cfg.UnitStride, cfg.Segments, cfg.InputCepstra = o.units, o.stride, o.segments, o.cepstra
		cfg.EncoderHidden, cfg.DecoderHidden, cfg.DecoderLayers = o.encHidden, o.decHidden, o.decLayers
		cfg.GriffinLimIterations = o.griffinIters
		cfg.PrevDropout = o.prevDropout
		cfg.ContextHidden = o.ctxHidden
		cfg.Seed = o.seed
		longest, total := 0, 0
		for _, i := range p.canon {
			seq, err := cb.Encode(p.logMel[i], o.stride)
			if err != nil {
				return err
			}
			longest = max(longest, len(seq.Units))
			total += len(seq.Units)
		}
		cfg.MaxUnits = longest + 1
		slog.Info("target sequences", "longest", longest, "mean", float64(total)/float64(len(p.canon)))
		if m, err = model.New(cfg, cb); err != nil {
			return err
		}
		if err := train(ctx, p, m, o); err != nil {
			return err
		}
		if o.save != "" {
			f, err := os.Create(o.save)
			if err != nil {
				return err
			}
			if err := m.Save(f); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
	return evaluate(ctx, p, m, o)
}

func train(ctx context.Context, p *prep, m *model.Model, o options) error {
	cfg := m.Config()
	// Target sequences and encoder inputs.
	seqs := map[key]units.Sequence{}
	for k, i := range p.canon {
		seq, err := m.TargetSequence(p.logMel[i])
		if err != nil {
			return err
		}
		seqs[k] = seq
	}
	var pairs []pair
	inputs := make([][]float32, len(p.cd.Utts))
	for i, u := range p.cd.Utts {
		if u.Canon || !p.trainVar[u.Variant] || p.heldPhrase[u.Phrase] {
			continue
		}
		for _, t := range o.langs {
			if t != u.Lang && !p.heldPair[[2]string{u.Lang, t}] {
				pairs = append(pairs, pair{i, t})
			}
		}
		in, err := m.EncoderInput(p.logMel[i])
		if err != nil {
			return err
		}
		inputs[i] = in
	}
	slog.Info("training", "pairs", len(pairs), "params", m.Params().Size(), "max_units", cfg.MaxUnits, "batch", o.batch, "budget", o.budget)
	var buckets bucketSet
	var err error
	if o.positions > 0 {
		// One graph scoring a sample of positions of every target.
		g, err := m.NewGraph(o.batch, o.positions)
		if err != nil {
			return err
		}
		buckets = bucketSet{{graph: g, pairs: pairs}}
	} else if buckets, err = makeBuckets(m, pairs, func(pr pair) int {
		return len(seqs[key{pr.target, p.cd.Utts[pr.src].Phrase}].Units) + 1
	}, o); err != nil {
		return err
	}
	ac := model.DefaultAdamConfig()
	ac.LR = o.lr
	ac.ClipNorm = o.clip
	ac.WarmupSteps = int64(o.warmup)
	ac.DecaySteps = int64(o.expectedSteps)
	if o.expectedSteps == 0 {
		ac.DecaySteps = 1 << 40 // set from measured speed below
	}
	opt, err := model.NewAdam(ac, m.Params().Size())
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(o.seed, 2024))
	grads := make([]float32, m.Params().Size())
	exs := make([]model.Example, o.batch)
	var win model.Sums
	start, cpu0 := time.Now(), cpuSeconds()
	lastLog := start
	quick := quickSet(p, o, 200, false)
	quickSeen := quickSet(p, o, 100, true)
	for step := 0; o.maxSteps == 0 || step < o.maxSteps; step++ {
		if time.Since(start) >= o.budget || ctx.Err() != nil {
			break
		}
		bk := buckets.pick(rng)
		for b := range exs {
			pr := bk.pairs[rng.IntN(len(bk.pairs))]
			in := inputs[pr.src]
			if o.warp > 0 {
				alpha := 1 + o.warp*(2*rng.Float64()-1)
				if in, err = m.EncoderInput(features.WarpMel(p.logMel[pr.src], alpha)); err != nil {
					return err
				}
			}
			li, _ := cfg.LangIndex(pr.target)
			exs[b] = model.Example{Input: in, Target: li, Units: seqs[key{pr.target, p.cd.Utts[pr.src].Phrase}], Seed: o.seed<<32 ^ uint64(step*o.batch+b)}
		}
		s, err := bk.graph.Gradients(exs, grads)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		st, err := opt.Step(m.Params().Flat, grads, 1/float64(s.Examples))
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		win.Add(s)
		if step == 50 && o.expectedSteps == 0 {
			rate := float64(step+1) / time.Since(start).Seconds()
			n := int64(rate * o.budget.Seconds())
			if o.maxSteps > 0 {
				n = min(n, int64(o.maxSteps))
			}
			opt.SetDecaySteps(n)
			slog.Info("schedule set from measured speed", "steps_per_s", rate, "decay_steps", n)
		}
		if time.Since(lastLog) > 30*time.Second {
			el := time.Since(start).Seconds()
			slog.Info("train", "step", step+1, "loss_per_token", win.UnitLoss/float64(win.Tokens), "dur_loss", win.DurLoss/float64(win.Tokens),
				"token_acc", float64(win.Correct)/float64(win.Scored), "lr", st.LR, "gnorm", st.GradNorm,
				"steps_per_s", float64(step+1)/el, "cpu_s_per_step", (cpuSeconds()-cpu0)/float64(step+1), "elapsed", time.Since(start).Round(time.Second))
			win = model.Sums{}
			lastLog = time.Now()
		}
		if o.evalEvery > 0 && (step+1)%o.evalEvery == 0 {
			slog.Info("quick check (greedy, no Griffin-Lim)", "step", step+1,
				"unseen_voices", quickAccuracy(p, m, quick), "train_voices", quickAccuracy(p, m, quickSeen))
		}
	}
	el := time.Since(start)
	slog.Info("training done", "steps", opt.Steps(), "took", el.Round(time.Second), "steps_per_s", float64(opt.Steps())/el.Seconds(), "cpu_s_per_step", (cpuSeconds()-cpu0)/float64(opt.Steps()))
	return nil
}

// quickSet samples unseen-voice (or training-voice) translations for
// progress checks.
func quickSet(p *prep, o options, n int, seen bool) []pair {
	var all []pair
	for i, u := range p.cd.Utts {
		if u.Canon || p.trainVar[u.Variant] != seen || p.heldPhrase[u.Phrase] {
			continue
		}
		for _, t := range o.langs {
			if t != u.Lang {
				all = append(all, pair{i, t})
			}
		}
	}
	rng := rand.New(rand.NewPCG(o.seed, 7))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:min(n, len(all))]
}

// quickAccuracy matches greedy outputs' centroid frames (no Griffin-Lim)
// against the templates.
func quickAccuracy(p *prep, m *model.Model, set []pair) float64 {
	// Only the vocoder's frames are used: Griffin-Lim's needs nothing built.
	voc, _ := m.VocoderOf(context.Background(), model.VocoderGriffinLim)
	var mu sync.Mutex
	correct := 0
	parallel(len(set), 2, func(i int) {
		pr := set[i]
		in, err := m.EncoderInput(p.logMel[pr.src])
		if err != nil {
			return
		}
		li, _ := m.Config().LangIndex(pr.target)
		lm, err := voc.LogMel(m.Decode(in, li, model.DecodeOptions{}))
		if err != nil || lm.Frames == 0 {
			return
		}
		got, _, err := p.templates.Nearest(pr.target, lm)
		if err == nil && got == p.cd.Utts[pr.src].Phrase {
			mu.Lock()
			correct++
			mu.Unlock()
		}
	})
	return float64(correct) / float64(len(set))
}

// bucket is the training pairs whose targets fit one graph length.
type bucket struct {
	graph *model.Graph
	pairs []pair
}

type bucketSet []bucket

// makeBuckets splits pairs by target length (end marker included) into
// o.buckets groups of about equal size, each with a graph just long enough.
func makeBuckets(m *model.Model, pairs []pair, length func(pair) int, o options) (bucketSet, error) {
	sorted := slices.Clone(pairs)
	sort.SliceStable(sorted, func(i, j int) bool { return length(sorted[i]) < length(sorted[j]) })
	n := max(1, o.buckets)
	var out bucketSet
	lo := 0
	for b := range n {
		hi := (b + 1) * len(sorted) / n
		if hi <= lo {
			continue
		}
		// Keep equal lengths in one bucket.
		for hi < len(sorted) && length(sorted[hi]) == length(sorted[hi-1]) {
			hi++
		}
		l := length(sorted[hi-1])
		g, err := m.NewGraph(o.batch, l)
		if err != nil {
			return nil, err
		}
		out = append(out, bucket{graph: g, pairs: sorted[lo:hi]})
		slog.Info("length bucket", "length", l, "pairs", hi-lo)
		lo = hi
		if lo == len(sorted) {
			break
		}
	}
	return out, nil
}

// pick draws a bucket with probability proportional to its size, so every
// pair stays equally likely.
func (bs bucketSet) pick(rng *rand.Rand) bucket {
	total := 0
	for _, b := range bs {
		total += len(b.pairs)
	}
	r := rng.IntN(total)
	for _, b := range bs {
		if r < len(b.pairs) {
			return b
		}
		r -= len(b.pairs)
	}
	return bs[len(bs)-1]
}

// diagNN measures how separable phrases are in the encoder's raw input:
// each unseen-voice utterance is labelled with the phrase of its nearest
// training-voice utterance of the same language.
func diagNN(p *prep, o options) error {
	cfg := model.DefaultConfig(o.langs)
	cfg.Segments, cfg.InputCepstra = o.segments, o.cepstra
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	m, err := model.New(cfg, cb)
	if err != nil {
		return err
	}
	inputs := make([][]float32, len(p.cd.Utts))
	for i, u := range p.cd.Utts {
		if u.Canon {
			continue
		}
		if inputs[i], err = m.EncoderInput(p.logMel[i]); err != nil {
			return err
		}
	}
	byLang := map[string][]int{}
	var test []int
	for i, u := range p.cd.Utts {
		switch {
		case u.Canon || p.heldPhrase[u.Phrase]:
		case p.trainVar[u.Variant]:
			byLang[u.Lang] = append(byLang[u.Lang], i)
		default:
			test = append(test, i)
		}
	}
	rng := rand.New(rand.NewPCG(o.seed, 5))
	rng.Shuffle(len(test), func(i, j int) { test[i], test[j] = test[j], test[i] })
	test = test[:min(len(test), 400)]
	var mu sync.Mutex
	correct := 0
	parallel(len(test), 2, func(k int) {
		i := test[k]
		best, bd := -1, math.Inf(1)
		for _, j := range byLang[p.cd.Utts[i].Lang] {
			var d float64
			for x, v := range inputs[i] {
				e := float64(v - inputs[j][x])
				d += e * e
			}
			if d < bd {
				best, bd = j, d
			}
		}
		if p.cd.Utts[best].Phrase == p.cd.Utts[i].Phrase {
			mu.Lock()
			correct++
			mu.Unlock()
		}
	})
	fmt.Printf("nearest-neighbour phrase accuracy of raw encoder input, unseen voices vs training voices: %.3f (%d/%d), segments %d cepstra %d\n",
		float64(correct)/float64(len(test)), correct, len(test), o.segments, o.cepstra)
	return nil
}

// diagDecode compares greedy unit sequences with the targets on unseen
// voices: exact matches, where the first mismatch falls, edit distance.
func diagDecode(p *prep, m *model.Model, o options) error {
	set := quickSet(p, o, 300, false)
	exact, firstSum, editSum, lenSum := 0, 0, 0, 0
	hist := make([]int, 6)
	for _, pr := range set {
		in, err := m.EncoderInput(p.logMel[pr.src])
		if err != nil {
			return err
		}
		li, _ := m.Config().LangIndex(pr.target)
		got := m.Decode(in, li, model.DecodeOptions{Beam: o.beam})
		want, err := m.TargetSequence(p.logMel[p.canon[key{pr.target, p.cd.Utts[pr.src].Phrase}]])
		if err != nil {
			return err
		}
		first := 0
		for first < len(got.Units) && first < len(want.Units) && got.Units[first] == want.Units[first] {
			first++
		}
		if slices.Equal(got.Units, want.Units) {
			exact++
		}
		firstSum += first
		ed := editDistance(got.Units, want.Units)
		editSum += ed
		lenSum += len(want.Units)
		hist[min(5, ed)]++
	}
	n := float64(len(set))
	fmt.Printf("greedy vs target units on %d unseen-voice pairs: exact %.3f, mean first mismatch at %.1f, mean edit distance %.2f over mean length %.1f; edit-distance histogram 0..5+: %v\n",
		len(set), float64(exact)/n, float64(firstSum)/n, float64(editSum)/n, float64(lenSum)/n, hist)
	return nil
}

func editDistance(a, b []int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// readFeatures fills dst from a features cache written for the same
// corpus (same utterance count); it reports whether it did.
func readFeatures(path string, dst []audio.Spectrogram) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var got []audio.Spectrogram
	if err := gob.NewDecoder(f).Decode(&got); err != nil || len(got) != len(dst) {
		return false
	}
	copy(dst, got)
	slog.Info("features cache hit", "path", path)
	return true
}

func writeFeatures(path string, s []audio.Spectrogram) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
