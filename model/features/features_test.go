package features

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"babelfish.dev/babelfish/audio"
)

func spec(frames, bins int, f func(t, b int) float32) audio.Spectrogram {
	s := audio.Spectrogram{Frames: frames, Bins: bins, Data: make([]float32, frames*bins)}
	for t := range frames {
		for b := range bins {
			s.Data[t*bins+b] = f(t, b)
		}
	}
	return s
}

func TestTrim(t *testing.T) {
	const silent, loud = -23, 0 // ln power: about 100 dB apart
	for _, tc := range []struct {
		name        string
		levels      []float32
		db          float64
		pad         int
		first, last int // kept frames, inclusive, of the original
	}{
		{"speech in the middle", []float32{silent, silent, silent, loud, loud, silent, silent}, 40, 0, 3, 4},
		{"padding kept", []float32{silent, silent, silent, loud, loud, silent, silent}, 40, 1, 2, 5},
		{"padding clipped at the edges", []float32{silent, loud, silent}, 40, 5, 0, 2},
		{"all loud", []float32{loud, loud}, 40, 0, 0, 1},
		{"all silent stays whole", []float32{silent, silent}, 40, 0, 0, 1},
		{"quiet tail within range kept", []float32{loud, -2, silent}, 40, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(len(tc.levels), 4, func(t, b int) float32 { return tc.levels[t] })
			got := Trim(s, tc.db, tc.pad)
			if want := tc.last - tc.first + 1; got.Frames != want {
				t.Fatalf("kept %d frames, want %d", got.Frames, want)
			}
			if !slices.Equal(got.Data, s.Data[tc.first*4:(tc.last+1)*4]) {
				t.Errorf("kept the wrong frames: %v", got.Data)
			}
		})
	}
	if got := Trim(audio.Spectrogram{Bins: 4}, 40, 2); got.Frames != 0 {
		t.Errorf("empty spectrogram trimmed to %d frames", got.Frames)
	}
}

// TestTrimMatchesExact checks that Trim's bounds never change a decision:
// on random spectrograms (smooth, noisy, with a frame tuned to sit exactly
// on the threshold, with non-finite values) it keeps exactly the frames
// that computing every frame's energy keeps.
func TestTrimMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		frames, bins := 1+rng.IntN(60), 1+rng.IntN(80)
		scale := []float64{0.01, 1, 10, 1e6}[i%4]
		s := spec(frames, bins, func(t, b int) float32 {
			return float32(-20 + 20*math.Sin(float64(t)/7+float64(i)) + scale*rng.NormFloat64())
		})
		db := []float64{0, 1e-9, 3, 40, 60, 1e9}[rng.IntN(6)]
		if i%5 == 0 {
			// Make one frame's energy the threshold itself, or one ulp off.
			e := FrameEnergy(s)
			peak := slices.Max(e)
			t0 := rng.IntN(frames)
			db = (peak - e[t0]) * 10 / math.Ln10
		}
		if i%97 == 0 {
			s.Data[rng.IntN(len(s.Data))] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[i%3]
		}
		pad := rng.IntN(3)
		got, want := Trim(s, db, pad), trimExact(s, db, pad)
		if got.Frames != want.Frames || len(got.Data) != len(want.Data) || (len(got.Data) > 0 && &got.Data[0] != &want.Data[0]) {
			t.Fatalf("case %d (%d x %d, db %g, pad %d): kept %d frames, computing every energy keeps %d", i, frames, bins, db, pad, got.Frames, want.Frames)
		}
	}
}

func TestNormalize(t *testing.T) {
	s := spec(10, 3, func(t, b int) float32 { return float32(5*b) + float32(t%2) })
	n := Normalize(s)
	for b := range 3 {
		var mean, ss float64
		for t := range 10 {
			v := float64(n.Row(t)[b])
			mean += v
			ss += v * v
		}
		if math.Abs(mean/10) > 1e-6 {
			t.Errorf("bin %d mean %g after normalising", b, mean/10)
		}
		if math.Abs(ss/10-1) > 1e-5 {
			t.Errorf("bin %d variance %g, want 1 (all bins vary alike here)", b, ss/10)
		}
	}
	// A gain (a constant in log power) changes nothing.
	louder := spec(10, 3, func(t, b int) float32 { return s.Row(t)[b] + 7 })
	if !slices.Equal(Normalize(louder).Data, n.Data) {
		t.Error("a gain changed the normalised features")
	}
}

func TestPool(t *testing.T) {
	ramp := spec(6, 1, func(t, b int) float32 { return float32(t) })
	for _, tc := range []struct {
		name string
		s    audio.Spectrogram
		n    int
		want []float32
	}{
		{"even split", ramp, 3, []float32{0.5, 2.5, 4.5}},
		{"identity", ramp, 6, []float32{0, 1, 2, 3, 4, 5}},
		{"fractional spans", ramp, 4, []float32{1.0 / 3, 5.0 / 3, 10.0 / 3, 14.0 / 3}},
		{"stretch a short clip", spec(2, 1, func(t, b int) float32 { return float32(10 * t) }), 4, []float32{0, 0, 10, 10}},
		{"no frames", audio.Spectrogram{Bins: 1}, 2, []float32{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Pool(tc.s, tc.n)
			if len(got) != len(tc.want) {
				t.Fatalf("%d values, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if math.Abs(float64(got[i]-tc.want[i])) > 1e-5 {
					t.Fatalf("Pool = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestMelCepstrum(t *testing.T) {
	// A flat log spectrum has only c0, equal to half the log power.
	flat := spec(2, 40, func(t, b int) float32 { return 4 })
	c := MelCepstrum(flat, 5)
	if c.Bins != 5 || math.Abs(float64(c.Row(0)[0])-2) > 1e-5 {
		t.Errorf("flat spectrum: c0 = %v, want 2", c.Row(0)[0])
	}
	for k := 1; k < 5; k++ {
		if math.Abs(float64(c.Row(1)[k])) > 1e-5 {
			t.Errorf("flat spectrum: c%d = %g, want 0", k, c.Row(1)[k])
		}
	}
	// A cosine across the bands shows up in its own coefficient.
	cos := spec(1, 40, func(_, b int) float32 { return float32(2 * math.Cos(math.Pi/40*(float64(b)+0.5)*3)) })
	c = MelCepstrum(cos, 6)
	for k := range 6 {
		want := 0.0
		if k == 3 {
			want = 0.5 // (1/2 for amplitude) * 2 * (1/2 from the cosine's energy)
		}
		if math.Abs(float64(c.Row(0)[k])-want) > 1e-5 {
			t.Errorf("cosine spectrum: c%d = %g, want %g", k, c.Row(0)[k], want)
		}
	}
}

// TestCepstrumRange checks that a prebuilt transform for c_from..c_(to-1)
// gives MelCepstrum's columns bit for bit, and that the range is clipped
// to the bands.
func TestCepstrumRange(t *testing.T) {
	s := spec(7, 40, func(t, b int) float32 { return float32(math.Sin(float64(3*t+b)) * 5) })
	full := MelCepstrum(s, 21)
	// The blocked loop against the plain one, term by term in band order.
	ref := NewCepstrum(40, 0, 21)
	for f := range s.Frames {
		for k := range 21 {
			var acc float64
			for b, v := range s.Row(f) {
				acc += ref.basis[k*40+b] * float64(v)
			}
			if got := full.Row(f)[k]; got != float32(acc) {
				t.Fatalf("frame %d c%d = %v, plain loop %v", f, k, got, float32(acc))
			}
		}
	}
	for _, tc := range []struct{ from, to, wantBins int }{{0, 21, 21}, {1, 21, 20}, {5, 9, 4}, {3, 3, 0}, {30, 99, 10}} {
		c := NewCepstrum(40, tc.from, tc.to).Apply(s)
		if c.Bins != tc.wantBins || c.Frames != s.Frames {
			t.Fatalf("[%d,%d): %d x %d, want %d x %d", tc.from, tc.to, c.Frames, c.Bins, s.Frames, tc.wantBins)
		}
		if tc.to > 21 {
			continue
		}
		for f := range s.Frames {
			for k, v := range c.Row(f) {
				if want := full.Row(f)[tc.from+k]; v != want {
					t.Fatalf("[%d,%d): frame %d c%d = %v, want %v", tc.from, tc.to, f, tc.from+k, v, want)
				}
			}
		}
	}
}

func TestFrontend(t *testing.T) {
	f, err := NewFrontend(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// 0.2 s silence, 0.3 s tone, 0.2 s silence at 8 kHz: resampled to 16
	// kHz and trimmed to about the tone.
	var x []float32
	x = append(x, make([]float32, 1600)...)
	for i := range 2400 {
		x = append(x, float32(0.5*math.Sin(2*math.Pi*440*float64(i)/8000)))
	}
	x = append(x, make([]float32, 1600)...)
	lm, err := f.LogMel(audio.Clip{Rate: 8000, Samples: x})
	if err != nil {
		t.Fatal(err)
	}
	if lm.Bins != 80 || lm.Frames < 28 || lm.Frames > 38 {
		t.Errorf("trimmed to %d frames of %d bins, want about 30 frames of 80", lm.Frames, lm.Bins)
	}
	if _, err := f.LogMel(audio.Clip{Rate: 0, Samples: x}); err == nil {
		t.Error("rate 0 accepted")
	}
	for _, bad := range []Config{{TrimDB: -1}, {TrimPad: -3}, {Mel: audio.MelConfig{SampleRate: 16000, NFFT: 64, NMels: 80}}} {
		if _, err := NewFrontend(bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestWarpMel(t *testing.T) {
	// One frame whose bins count up: bin b holds b.
	ramp := spec(1, 8, func(_, b int) float32 { return float32(b) })
	for _, tc := range []struct {
		name  string
		alpha float64
		want  []float32
	}{
		{"identity", 1, []float32{0, 1, 2, 3, 4, 5, 6, 7}},
		{"stretch reads lower bins", 2, []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5}},
		{"squeeze clamps at the top", 0.5, []float32{0, 2, 4, 6, 7, 7, 7, 7}},
		{"non-positive copies", 0, []float32{0, 1, 2, 3, 4, 5, 6, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := WarpMel(ramp, tc.alpha)
			for b, w := range tc.want {
				if math.Abs(float64(got.Data[b]-w)) > 1e-6 {
					t.Fatalf("bin %d = %g, want %g (all %v)", b, got.Data[b], w, got.Data)
				}
			}
			if &got.Data[0] == &ramp.Data[0] {
				t.Fatal("WarpMel returned its input's storage")
			}
		})
	}
}

// BenchmarkTrim is a 1.5 s utterance (150 frames of 80 bands) with
// silence at both ends, against computing every frame's energy.
func BenchmarkTrim(b *testing.B) {
	s := spec(150, 80, func(t, k int) float32 {
		if t < 30 || t > 120 {
			return float32(-20 + 0.1*float64(k%7))
		}
		return float32(-2 + math.Sin(float64(t*k)))
	})
	for _, impl := range []struct {
		name string
		trim func(audio.Spectrogram, float64, int) audio.Spectrogram
	}{{"bounded", Trim}, {"exact", trimExact}} {
		b.Run(impl.name, func(b *testing.B) {
			for b.Loop() {
				impl.trim(s, 40, 2)
			}
		})
	}
}

// rowMax's four running maxima give the one-at-a-time maximum, NaN and
// the sign of zero included, at every length.
func TestRowMaxMatchesSequential(t *testing.T) {
	nan, negZero := float32(math.NaN()), float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	vals := []float32{0, negZero, 1, -3, 2.5, -inf, inf, nan, 7}
	for n := 0; n <= 9; n++ {
		for start := range vals {
			row := make([]float32, n)
			for i := range row {
				row[i] = vals[(start+i*5)%len(vals)]
			}
			want := math.Inf(-1)
			for _, v := range row {
				want = max(want, float64(v))
			}
			if got := rowMax(row); math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
				t.Fatalf("rowMax(%v) = %v, one at a time %v", row, got, want)
			}
		}
	}
	if got := rowMax([]float32{negZero, 0, negZero, negZero, negZero}); math.Signbit(got) {
		t.Fatalf("rowMax of -0 and +0 = -0, want +0")
	}
}
