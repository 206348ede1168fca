package audio

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// melToMagnitudeOneByOne is MelToMagnitude solving one frame at a time
// with the scalar melApply and melT: the definition the lanes must match.
func (a *MelAnalyzer) melToMagnitudeOneByOne(logMel Spectrogram, nnlsIters int) Spectrogram {
	pinv, err := a.filterbankPinv()
	if err != nil {
		panic(err)
	}
	nm, nb := a.cfg.NMels, a.bins
	out := Spectrogram{Frames: logMel.Frames, Bins: nb, Data: make([]float32, logMel.Frames*nb)}
	mel, s := make([]float64, nm), make([]float64, nb)
	num, den, bs := make([]float64, nb), make([]float64, nb), make([]float64, nm)
	for t := range logMel.Frames {
		for m, v := range logMel.Row(t) {
			mel[m] = math.Exp(float64(v))
		}
		mat.NewVecDense(nb, s).MulVec(pinv, mat.NewVecDense(nm, mel))
		peak := 0.0
		for k, v := range s {
			s[k] = max(v, 0)
			peak = max(peak, s[k])
		}
		if nnlsIters > 0 && peak > 0 {
			for k := range s {
				s[k] = max(s[k], peak*1e-6)
			}
			a.melT(num, mel)
			for range nnlsIters {
				a.melApply(bs, s)
				a.melT(den, bs)
				for k := range s {
					if num[k] <= 0 {
						s[k] = 0
					} else {
						s[k] *= num[k] / (den[k] + 1e-30)
					}
				}
			}
		}
		a.magnitudeRow(out.Row(t), s)
	}
	return out
}

// TestMelToMagnitudeLanes checks that solving frames four at a time, with
// the vector kernel and with its Go reference, gives every frame's
// one-at-a-time solution bit for bit: partial lane groups, repeated
// frames, silent frames (no positive estimate), non-finite values, and
// both power and magnitude spectra.
func TestMelToMagnitudeLanes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for _, power := range []float64{2, 1} {
		cfg := DefaultMelConfig()
		cfg.Power = power
		a, err := NewMelAnalyzer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nm := cfg.NMels
		for trial := range 40 {
			frames := trial % 14
			lm := Spectrogram{Frames: frames, Bins: nm, Data: make([]float32, frames*nm)}
			for f := range frames {
				row := lm.Row(f)
				switch {
				case f > 0 && rng.IntN(4) == 0:
					copy(row, lm.Row(f-1))
				case rng.IntN(9) == 0:
					for m := range row {
						row[m] = -200 // exp underflows: no positive estimate
					}
				default:
					for m := range row {
						row[m] = float32(-9 + 8*rng.Float64())
					}
					if rng.IntN(12) == 0 {
						row[rng.IntN(nm)] = float32(math.NaN())
					}
					if rng.IntN(12) == 0 {
						row[rng.IntN(nm)] = 800 // exp overflows
					}
				}
			}
			for _, iters := range []int{-1, 0, 1, 7, 60} {
				want := a.melToMagnitudeOneByOne(lm, iters)
				for name, refine := range map[string]func(*nnlsScratch, melCSR, int){"kernel": nnlsRun, "go": nnlsLanesGo} {
					got, err := a.melToMagnitude(lm, iters, refine)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.EqualFunc(got.Data, want.Data, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
						t.Fatalf("power %g, trial %d (%d frames), %d iterations, %s: differs from one frame at a time", power, trial, frames, iters, name)
					}
				}
			}
		}
	}
}

func BenchmarkMelToMagnitude(b *testing.B) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		b.Fatal(err)
	}
	lm := a.LogMel(sine(16000, 440, 0.5, 16000/2))
	for i := range lm.Data {
		lm.Data[i] += float32(i%7) * 0.01 // no two frames alike
	}
	for b.Loop() {
		if _, err := a.MelToMagnitude(lm, 100); err != nil {
			b.Fatal(err)
		}
	}
}

// glProjectComplex is the Griffin-Lim step as complex128 arithmetic.
func glProjectComplex(c, tPrev, z []complex128, mag []float32, momentum float64) {
	for i, zi := range z {
		m := float64(mag[i])
		var t complex128
		if r := math.Sqrt(real(zi)*real(zi) + imag(zi)*imag(zi)); r > 1e-12 {
			t = zi * complex(m/r, 0)
		} else {
			t = complex(m, 0)
		}
		c[i] = t + complex(momentum, 0)*(t-tPrev[i])
		tPrev[i] = t
	}
}

// sameBits: the same float64, or both NaN (whose payload depends on
// which operand a compiler puts first).
func sameBits(x, y float64) bool {
	return math.Float64bits(x) == math.Float64bits(y) || math.IsNaN(x) && math.IsNaN(y)
}

// TestGLProject checks the vector Griffin-Lim step, and complex128
// arithmetic where the compiler fuses no product, against glProjectGo bit
// for bit (any NaN for a NaN), on odd and even lengths with zeros of
// both signs, values near the 1e-12 cut, infinities and NaNs.
func TestGLProject(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := []float64{0, math.Copysign(0, -1), 1e-13, -1e-12, 1e-300, math.Inf(1), math.Inf(-1), math.NaN(), 1e200}
	val := func() float64 {
		if rng.IntN(6) == 0 {
			return special[rng.IntN(len(special))]
		}
		return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-4))
	}
	same := func(x, y []complex128) bool {
		return slices.EqualFunc(x, y, func(a, b complex128) bool {
			return sameBits(real(a), real(b)) && sameBits(imag(a), imag(b))
		})
	}
	for trial := range 300 {
		n := trial % 37
		z, prev := make([]complex128, n), make([]complex128, n)
		mag := make([]float32, n)
		for i := range n {
			z[i] = complex(val(), val())
			prev[i] = complex(val(), val())
			mag[i] = float32(math.Abs(val()))
			if rng.IntN(10) == 0 {
				mag[i] = 0
			}
		}
		momentum := []float64{0.99, 0, 1.2}[trial%3]
		wantC, wantT := make([]complex128, n), slices.Clone(prev)
		glProjectGo(wantC, wantT, z, mag, momentum)
		impls := map[string]func(c, tPrev, z []complex128, mag []float32, momentum float64){"kernel": glProject}
		if unfusedFloat {
			impls["complex128"] = glProjectComplex
		}
		for name, f := range impls {
			c, tp := make([]complex128, n), slices.Clone(prev)
			f(c, tp, z, mag, momentum)
			if !same(c, wantC) || !same(tp, wantT) {
				for i := range c {
					if !same(c[i:i+1], wantC[i:i+1]) || !same(tp[i:i+1], wantT[i:i+1]) {
						t.Logf("bin %d: z %v mag %v prev %v: c %v want %v (bits %x %x / %x %x), t %v want %v", i, z[i], mag[i], prev[i], c[i], wantC[i], math.Float64bits(real(c[i])), math.Float64bits(imag(c[i])), math.Float64bits(real(wantC[i])), math.Float64bits(imag(wantC[i])), tp[i], wantT[i])
					}
				}
				t.Fatalf("trial %d (%d bins), %s: differs from glProjectGo", trial, n, name)
			}
		}
	}
}
