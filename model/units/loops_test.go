package units

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"

	"babelfish.dev/babelfish/audio"
)

// toneUnits is a codebook learned from three steady tones in turn and the
// sequence that encodes them.
func toneUnits(t *testing.T, a *audio.MelAnalyzer) (*Codebook, Sequence) {
	t.Helper()
	var x []float32
	for _, f := range []float64{300, 1200, 300, 2400} {
		for i := range 3200 {
			x = append(x, float32(0.5*math.Sin(2*math.Pi*f*float64(i)/16000)))
		}
	}
	lm := a.LogMel(x)
	cb, err := KMeans(context.Background(), PoolFrames(lm, 2).Data, lm.Bins, KMeansConfig{K: 6, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := cb.Encode(lm, 2)
	if err != nil {
		t.Fatal(err)
	}
	return cb, seq
}

// peakBand is each frame's loudest mel band.
func peakBand(s audio.Spectrogram) []int {
	out := make([]int, s.Frames)
	for f := range s.Frames {
		row := s.Row(f)
		for b, v := range row {
			if v > row[out[f]] {
				out[f] = b
			}
		}
	}
	return out
}

// Loops render each unit's sound where Griffin-Lim would, at the same
// length: the output's loudest band follows the units' frame by frame,
// with and without refinement, and goroutines may share one Loops.
func TestLoopsRenderUnits(t *testing.T) {
	a, err := audio.NewMelAnalyzer(audio.DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	cb, seq := toneUnits(t, a)
	loops, err := NewLoops(t.Context(), cb, a, LoopsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if loops.K() != cb.K {
		t.Fatalf("%d loops for %d units", loops.K(), cb.K)
	}
	gl := &Vocoder{Codebook: cb, Stride: 2, Smooth: 1, Analyzer: a, GriffinLim: audio.GriffinLimConfig{Iterations: 8}}
	ref, err := gl.Synthesize(t.Context(), seq)
	if err != nil {
		t.Fatal(err)
	}
	target, err := gl.LogMel(seq)
	if err != nil {
		t.Fatal(err)
	}
	want := peakBand(target)
	for _, refine := range []int{0, 4} {
		v := *gl
		v.Loops, v.Refine = loops, refine
		clip, err := v.Synthesize(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if clip.Rate != ref.Rate || len(clip.Samples) != len(ref.Samples) {
			t.Fatalf("refine %d: %d samples at %d Hz, Griffin-Lim gives %d at %d Hz", refine, len(clip.Samples), clip.Rate, len(ref.Samples), ref.Rate)
		}
		got := peakBand(a.LogMel(clip.Samples))
		same := 0
		for f := range min(len(got), len(want)) {
			if got[f] == want[f] {
				same++
			}
		}
		frac := float64(same) / float64(len(want))
		t.Logf("refine %d: loudest band matches the units' in %.0f%% of %d frames", refine, 100*frac, len(want))
		if frac < 0.9 {
			t.Errorf("refine %d: loudest band matches the units' in %.0f%% of frames, want >= 90%%", refine, 100*frac)
		}
		again, err := v.Synthesize(t.Context(), seq)
		if err != nil || !slices.Equal(again.Samples, clip.Samples) {
			t.Errorf("refine %d: a second rendering differs (%v)", refine, err)
		}
	}

	var wg sync.WaitGroup
	v := *gl
	v.Loops = loops
	for range 4 {
		wg.Go(func() {
			if _, err := v.Synthesize(context.Background(), seq); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	empty, err := v.Synthesize(t.Context(), Sequence{})
	if err != nil || len(empty.Samples) != 0 {
		t.Errorf("empty sequence: %d samples, %v", len(empty.Samples), err)
	}
	if _, err := v.Synthesize(t.Context(), Sequence{Units: []int{cb.K}, Durations: []int{1}}); err == nil {
		t.Error("unit outside the codebook: no error")
	}
	other := *cb
	other.K, other.Centroids = 2, cb.Centroids[:2*cb.Dim]
	v.Codebook = &other
	if _, err := v.Synthesize(t.Context(), Sequence{Units: []int{0}, Durations: []int{1}}); err == nil {
		t.Error("loops of another codebook: no error")
	}
}

func TestNewLoopsErrors(t *testing.T) {
	a, err := audio.NewMelAnalyzer(audio.DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	cb := &Codebook{K: 2, Dim: 80, Centroids: make([]float32, 160)}
	for _, tc := range []struct {
		name string
		cb   *Codebook
		cfg  LoopsConfig
	}{
		{"dims differ", &Codebook{K: 2, Dim: 3, Centroids: make([]float32, 6)}, LoopsConfig{}},
		{"period under NFFT", cb, LoopsConfig{Period: 2}},
		{"negative period", cb, LoopsConfig{Period: -1}},
	} {
		if _, err := NewLoops(t.Context(), tc.cb, a, tc.cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := NewLoops(ctx, cb, a, LoopsConfig{}); err == nil {
		t.Error("cancelled context: no error")
	}
}

// renderPerSample is render with each crossfade gain computed where it is
// used: the definition the gain tables must reproduce.
func (l *Loops) renderPerSample(seq Sequence, stride, xfade int) []float32 {
	n := seq.Frames() * stride
	length := max((n-1)*l.hop, 1)
	out := make([]float32, length)
	bounds := make([]int, len(seq.Units)+1)
	f := 0
	for i, d := range seq.Durations {
		bounds[i] = min(length, max(0, f*l.hop-l.hop/2))
		f += d * stride
	}
	bounds[0], bounds[len(seq.Units)] = 0, length
	half := xfade / 2
	for i, u := range seq.Units {
		w := l.wave[u]
		lo, hi := bounds[i], bounds[i+1]
		if i > 0 {
			lo -= half
		}
		if i < len(seq.Units)-1 {
			hi += xfade - half
		}
		lo, hi = max(0, lo), min(length, hi)
		for t := lo; t < hi; t++ {
			g := 1.0
			if i > 0 && t < bounds[i]+xfade-half {
				g *= math.Sin(math.Pi / 2 * (float64(t-(bounds[i]-half)) + 0.5) / float64(xfade))
			}
			if i < len(seq.Units)-1 && t >= bounds[i+1]-half {
				g *= math.Cos(math.Pi / 2 * (float64(t-(bounds[i+1]-half)) + 0.5) / float64(xfade))
			}
			out[t] += float32(g) * w[t%len(w)]
		}
	}
	return out
}

// render's gain tables give the per-sample gains' output bit for bit, for
// short and long units and crossfades from one sample to longer than the
// output.
func TestLoopsRenderGainTables(t *testing.T) {
	a, err := audio.NewMelAnalyzer(audio.DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	cb, seq := toneUnits(t, a)
	loops, err := NewLoops(t.Context(), cb, a, LoopsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	short := Sequence{Units: []int{0, 1, 2, 1}, Durations: []int{1, 1, 3, 1}}
	for _, s := range []Sequence{seq, short, {Units: []int{3}, Durations: []int{2}}} {
		for _, xfade := range []int{1, 2, 159, 160, 320, 1000, 100000} {
			got, want := loops.render(s, 2, xfade), loops.renderPerSample(s, 2, xfade)
			if !slices.Equal(got, want) {
				t.Fatalf("%d units, crossfade %d: differs from per-sample gains", len(s.Units), xfade)
			}
		}
	}
}
