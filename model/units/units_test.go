package units

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"babelfish.dev/babelfish/audio"
)

func blobs(centers [][]float32, per int, sd float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []float32
	for i := range per {
		for _, c := range centers {
			_ = i
			for _, v := range c {
				out = append(out, v+float32(rng.NormFloat64()*sd))
			}
		}
	}
	return out
}

func TestKMeansFindsKnownClusters(t *testing.T) {
	centers := [][]float32{{0, 0, 0}, {10, 0, 0}, {0, 10, 0}, {0, 0, 10}, {10, 10, 10}}
	data := blobs(centers, 200, 0.5, 3)
	for _, tc := range []struct {
		name string
		seed uint64
	}{{"seed 1", 1}, {"seed 2", 2}, {"seed 99", 99}} {
		t.Run(tc.name, func(t *testing.T) {
			cb, err := KMeans(context.Background(), data, 3, KMeansConfig{K: len(centers), Seed: tc.seed})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range centers {
				best := math.Inf(1)
				for k := range cb.K {
					best = math.Min(best, math.Sqrt(sqDist(c, cb.Centroid(k))))
				}
				if best > 0.2 {
					t.Errorf("no centroid within 0.2 of %v (nearest %.3f): %v", c, best, cb.Centroids)
				}
			}
			again, err := KMeans(context.Background(), data, 3, KMeansConfig{K: len(centers), Seed: tc.seed})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cb.Centroids, again.Centroids) {
				t.Error("same seed gave different centroids")
			}
			// Every point of a blob shares one unit.
			assign := cb.Assign(data)
			for i, a := range assign {
				if a != assign[i%len(centers)] {
					t.Fatalf("point %d assigned %d, its blob's first point %d", i, a, assign[i%len(centers)])
				}
			}
		})
	}
}

func TestKMeansRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []float32
		dim  int
		cfg  KMeansConfig
		want string
	}{
		{"zero dim", []float32{1, 2}, 0, KMeansConfig{K: 1}, "dim"},
		{"ragged", []float32{1, 2, 3}, 2, KMeansConfig{K: 1}, "multiple of dim"},
		{"zero K", []float32{1, 2}, 2, KMeansConfig{K: 0}, "K is 0"},
		{"too few points", []float32{1, 2, 3, 4}, 2, KMeansConfig{K: 3}, "at least K"},
		{"negative iterations", []float32{1, 2}, 2, KMeansConfig{K: 1, Iterations: -1}, "Iterations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := KMeans(context.Background(), tc.data, tc.dim, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDedup(t *testing.T) {
	for _, tc := range []struct {
		in         []int
		units, dur []int
	}{
		{nil, nil, nil},
		{[]int{3}, []int{3}, []int{1}},
		{[]int{1, 1, 2, 2, 2, 1, 5}, []int{1, 2, 1, 5}, []int{2, 3, 1, 1}},
		{[]int{0, 0, 0, 0}, []int{0}, []int{4}},
	} {
		s := Dedup(tc.in)
		if !slices.Equal(s.Units, tc.units) || !slices.Equal(s.Durations, tc.dur) {
			t.Errorf("Dedup(%v) = %v %v, want %v %v", tc.in, s.Units, s.Durations, tc.units, tc.dur)
		}
		if s.Frames() != len(tc.in) {
			t.Errorf("Dedup(%v).Frames() = %d, want %d", tc.in, s.Frames(), len(tc.in))
		}
	}
}

func TestPoolFrames(t *testing.T) {
	s := audio.Spectrogram{Frames: 5, Bins: 2, Data: []float32{0, 10, 2, 12, 4, 14, 6, 16, 8, 18}}
	for _, tc := range []struct {
		stride int
		want   []float32
	}{
		{1, s.Data},
		{2, []float32{1, 11, 5, 15, 8, 18}},
		{5, []float32{4, 14}},
		{8, []float32{4, 14}},
	} {
		if got := PoolFrames(s, tc.stride); !slices.Equal(got.Data, tc.want) {
			t.Errorf("stride %d: %v, want %v", tc.stride, got.Data, tc.want)
		}
	}
}

func TestVocoderRendersUnits(t *testing.T) {
	cb := &Codebook{K: 3, Dim: 2, Centroids: []float32{0, 0, 6, 6, -6, 3}}
	seq := Sequence{Units: []int{1, 2, 0}, Durations: []int{2, 1, 3}}
	for _, tc := range []struct {
		name   string
		v      Vocoder
		frames int
		first  []float32
	}{
		{"raw stride 1", Vocoder{Codebook: cb, Stride: 1}, 6, []float32{6, 6}},
		{"raw stride 2", Vocoder{Codebook: cb, Stride: 2}, 12, []float32{6, 6}},
		{"smoothed", Vocoder{Codebook: cb, Stride: 1, Smooth: 1}, 6, []float32{6, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lm, err := tc.v.LogMel(seq)
			if err != nil {
				t.Fatal(err)
			}
			if lm.Frames != tc.frames || !slices.Equal(lm.Row(0), tc.first) {
				t.Fatalf("%d frames, first %v: want %d, %v", lm.Frames, lm.Row(0), tc.frames, tc.first)
			}
			if tc.v.Smooth > 0 {
				// Frame 1 sits between unit 1 (two frames) and unit 2.
				if got := lm.Row(1)[0]; got != 2 {
					t.Errorf("smoothed frame 1 = %v, want mean of 6, 6, -6 = 2", got)
				}
			}
		})
	}
	for _, bad := range []Sequence{
		{Units: []int{3}, Durations: []int{1}},
		{Units: []int{0}, Durations: []int{0}},
		{Units: []int{0, 1}, Durations: []int{1}},
	} {
		if _, err := (&Vocoder{Codebook: cb}).LogMel(bad); err == nil {
			t.Errorf("LogMel(%v) gave no error", bad)
		}
	}
}

func TestEncodeSynthesizeRoundTrip(t *testing.T) {
	a, err := audio.NewMelAnalyzer(audio.DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Two tones in turn: units must follow them.
	var x []float32
	for seg, f := range []float64{300, 1200, 300} {
		_ = seg
		for i := range 3200 {
			x = append(x, float32(0.5*math.Sin(2*math.Pi*f*float64(i)/16000)))
		}
	}
	lm := a.LogMel(x)
	cb, err := KMeans(context.Background(), PoolFrames(lm, 2).Data, lm.Bins, KMeansConfig{K: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := cb.Encode(lm, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq.Units) < 3 || len(seq.Units) > 12 {
		t.Errorf("three steady tones gave %d units: %v", len(seq.Units), seq.Units)
	}
	if got, want := seq.Frames(), (lm.Frames+1)/2; got != want {
		t.Errorf("sequence spans %d unit frames, want %d", got, want)
	}
	v := &Vocoder{Codebook: cb, Stride: 2, Smooth: 1, Analyzer: a, GriffinLim: audio.GriffinLimConfig{Iterations: 8}}
	clip, err := v.Synthesize(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if clip.Rate != 16000 || len(clip.Samples) < 8000 || audio.RMS(clip.Samples) < 0.01 {
		t.Errorf("synthesised %d samples at %d Hz, RMS %g: want about 0.6 s of sound", len(clip.Samples), clip.Rate, audio.RMS(clip.Samples))
	}
}
