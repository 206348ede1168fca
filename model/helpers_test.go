package model

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/units"
)

// toyCorpus is a synthetic parallel corpus of tone "phrases": phrase p in
// language l is a sequence of tones whose frequencies depend on (l, p); a
// voice scales pitch and speed. It stands in for speech in fast tests.
type toyCorpus struct {
	langs   []string
	phrases int
	rate    int
}

func (tc toyCorpus) say(lang, phrase int, pitch, speed float64) audio.Clip {
	rng := rand.New(rand.NewPCG(uint64(lang*1000+phrase), 7))
	segs := 3 + rng.IntN(3)
	var x []float32
	x = append(x, make([]float32, tc.rate/20)...) // leading silence
	for range segs {
		f := (200 + 1200*rng.Float64()) * pitch
		n := int(float64(tc.rate) * (0.06 + 0.06*rng.Float64()) / speed)
		for i := range n {
			t := float64(i) / float64(tc.rate)
			env := math.Min(1, math.Min(float64(i), float64(n-i))/80)
			v := 0.5*math.Sin(2*math.Pi*f*t) + 0.25*math.Sin(4*math.Pi*f*t)
			x = append(x, float32(0.5*env*v))
		}
	}
	x = append(x, make([]float32, tc.rate/20)...)
	return audio.Clip{Rate: tc.rate, Samples: x}
}

// toySetup builds a small model and training examples over every
// (source voice, target language) pair.
func toySetup(t testing.TB, cfgEdit func(*Config)) (*Model, []Example, toyCorpus) {
	t.Helper()
	tc := toyCorpus{langs: []string{"aa", "bb", "cc"}, phrases: 6, rate: 16000}
	cfg := DefaultConfig(tc.langs)
	cfg.Segments = 8
	cfg.EncoderHidden = []int{32}
	cfg.DecoderHidden = 32
	cfg.Units = 16
	cfg.MaxUnits = 24
	cfg.MaxDuration = 8
	cfg.GriffinLimIterations = 4
	cfg.PrevDropout = 0
	if cfgEdit != nil {
		cfgEdit(&cfg)
	}
	probe, err := New(cfg, &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())})
	if err != nil {
		t.Fatal(err)
	}
	// Codebook over canonical target speech.
	var frames []float32
	canon := map[[2]int]audio.Spectrogram{}
	for l := range tc.langs {
		for p := range tc.phrases {
			lm, err := probe.Frontend().LogMel(tc.say(l, p, 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			canon[[2]int{l, p}] = lm
			frames = append(frames, units.PoolFrames(lm, cfg.UnitStride).Data...)
		}
	}
	cb, err := units.KMeans(context.Background(), frames, cfg.NMels(), units.KMeansConfig{K: cfg.Units, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, cb)
	if err != nil {
		t.Fatal(err)
	}
	var exs []Example
	for l := range tc.langs {
		for p := range tc.phrases {
			for _, v := range [][2]float64{{0.9, 1.1}, {1.1, 0.9}} {
				lm, err := m.Frontend().LogMel(tc.say(l, p, v[0], v[1]))
				if err != nil {
					t.Fatal(err)
				}
				in, err := m.EncoderInput(lm)
				if err != nil {
					t.Fatal(err)
				}
				for tl, tlang := range tc.langs {
					if tl == l {
						continue
					}
					seq, err := m.TargetSequence(canon[[2]int{tl, p}])
					if err != nil {
						t.Fatal(err)
					}
					ex, err := m.NewExample(in, tlang, seq)
					if err != nil {
						t.Fatal(err)
					}
					ex.Seed = uint64(len(exs))
					exs = append(exs, ex)
				}
			}
		}
	}
	return m, exs, tc
}
