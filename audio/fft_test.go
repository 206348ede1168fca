package audio

import (
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/dsp/fourier"
)

// TestPow2FFTMatchesGonum checks the radix-2 transform against gonum's, both
// ways, at every power-of-two length it serves.
func TestPow2FFTMatchesGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{8, 16, 64, 256, 512, 1024, 4096} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newFFTTables(n).plan(n)
			if _, ok := p.(*pow2FFT); !ok {
				t.Fatalf("plan(%d) is %T, want *pow2FFT", n, p)
			}
			g := fourier.NewFFT(n)
			x := make([]float64, n)
			for i := range x {
				x[i] = rng.NormFloat64()
			}
			got, want := p.Coefficients(nil, x), g.Coefficients(nil, x)
			scale := math.Sqrt(float64(n))
			for k := range want {
				if d := cmplx.Abs(got[k] - want[k]); d > 1e-12*scale {
					t.Fatalf("Coefficients[%d] = %v, gonum %v (|diff| %g)", k, got[k], want[k], d)
				}
			}
			// A spectrum that is not of a real signal everywhere: DC and
			// Nyquist carry imaginary parts, which both ignore.
			c := make([]complex128, n/2+1)
			for k := range c {
				c[k] = complex(rng.NormFloat64(), rng.NormFloat64())
			}
			gs, ws := p.Sequence(nil, c), g.Sequence(nil, c)
			for j := range ws {
				if d := math.Abs(gs[j] - ws[j]); d > 1e-12*float64(n) {
					t.Fatalf("Sequence[%d] = %g, gonum %g", j, gs[j], ws[j])
				}
			}
			// Round trip.
			back := p.Sequence(nil, p.Coefficients(nil, x))
			for j := range x {
				if d := math.Abs(back[j]/float64(n) - x[j]); d > 1e-12 {
					t.Fatalf("round trip [%d] = %g, want %g", j, back[j]/float64(n), x[j])
				}
			}
		})
	}
	for _, n := range []int{2, 4, 6, 400, 500} {
		if tb := newFFTTables(n); tb != nil {
			t.Errorf("newFFTTables(%d) = tables, want nil (gonum serves it)", n)
		}
		if _, ok := (*fftTables)(nil).plan(n).(*fourier.FFT); !ok {
			t.Errorf("plan(%d) is not gonum's", n)
		}
	}
}

func BenchmarkFFT512(b *testing.B) {
	x := make([]float64, 512)
	for i := range x {
		x[i] = float64(i%7) - 3
	}
	c := make([]complex128, 257)
	for _, bc := range []struct {
		name string
		p    realFFT
	}{{"gonum", fourier.NewFFT(512)}, {"pow2", newFFTTables(512).plan(512)}} {
		b.Run(bc.name+"/forward", func(b *testing.B) {
			for b.Loop() {
				bc.p.Coefficients(c, x)
			}
		})
		b.Run(bc.name+"/inverse", func(b *testing.B) {
			for b.Loop() {
				bc.p.Sequence(x, c)
			}
		})
	}
}

// The stages past the first two give the same bits on every path: the
// vector kernel where the CPU has one, and the Go loop that defines it.
func TestFFTStagesMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{8, 16, 32, 64, 512, 1024, 8192} {
		p := newFFTTables(n).plan(n).(*pow2FFT)
		ref := &pow2FFT{t: p.t, z: make([]complex128, p.t.h)}
		for range 20 {
			for i := range p.z {
				v := complex(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(9)-4)), rng.NormFloat64())
				p.z[i], ref.z[i] = v, v
			}
			p.stagesFrom8()
			ref.stagesFrom8Go()
			for i := range p.z {
				g, w := p.z[i], ref.z[i]
				if math.Float64bits(real(g)) != math.Float64bits(real(w)) || math.Float64bits(imag(g)) != math.Float64bits(imag(w)) {
					t.Fatalf("n=%d: z[%d] = %v, Go loop %v", n, i, g, w)
				}
			}
		}
	}
}
