package audio

import (
	"math"
	"math/rand/v2"
	"testing"
)

// splitComplex and unsplitComplex are the real-FFT split steps as plain
// complex128 arithmetic (their first form).
func splitComplex(dst, z, tw []complex128, h int) {
	for k := 1; k <= h/2; k++ {
		a, b := z[k], z[h-k]
		bc := complex(real(b), -imag(b))
		e := (a + bc) * 0.5
		o := (a - bc) * complex(0, -0.5)
		w := tw[k]
		dst[k] = e + w*o
		wc := complex(-real(w), imag(w))
		dst[h-k] = complex(real(e), -imag(e)) + wc*complex(real(o), -imag(o))
	}
}

func unsplitComplex(z, coeff, tw []complex128, rev []int32, h int) {
	put := func(k int, v complex128) { z[rev[k]] = complex(real(v), -imag(v)) }
	for k := 1; k <= h/2; k++ {
		a, b := coeff[k], coeff[h-k]
		bc := complex(real(b), -imag(b))
		w := tw[k]
		wc := complex(real(w), -imag(w))
		e := a + bc
		o := (a - bc) * wc
		put(k, e+complex(-imag(o), real(o)))
		ec, oc := complex(real(e), -imag(e)), complex(real(o), -imag(o))
		if k != h-k {
			put(h-k, ec+complex(-imag(oc), real(oc)))
		}
	}
}

// TestSplitSteps checks the split steps of the real FFT and the
// conjugating copy, vector kernels and (where the compiler fuses no
// product) plain complex128 arithmetic, against their Go forms bit for bit
// (any NaN for a NaN), at every size the FFT takes, with signed zeros,
// subnormals, infinities and NaNs mixed in.
func TestSplitSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	special := []float64{0, math.Copysign(0, -1), 0x1p-1074, math.Inf(1), math.Inf(-1), math.NaN()}
	val := func() float64 {
		if rng.IntN(10) == 0 {
			return special[rng.IntN(len(special))]
		}
		return rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-20))
	}
	cval := func() complex128 { return complex(val(), val()) }
	same := func(x, y []complex128) int {
		for i := range x {
			if !sameBits(real(x[i]), real(y[i])) || !sameBits(imag(x[i]), imag(y[i])) {
				return i
			}
		}
		return -1
	}
	for n := 8; n <= 4096; n <<= 1 {
		tb := newFFTTables(n)
		h := tb.h
		for trial := range 20 {
			z, coeff := make([]complex128, h), make([]complex128, h+1)
			for i := range z {
				z[i] = cval()
			}
			for i := range coeff {
				coeff[i] = cval()
			}
			type impl struct {
				name    string
				split   func(dst, z, tw []complex128, h int)
				unsplit func(z, coeff, tw []complex128, rev []int32, h int)
			}
			impls := []impl{{"kernel", split, unsplit}}
			if unfusedFloat {
				impls = append(impls, impl{"complex128", splitComplex, unsplitComplex})
			}
			want, wantZ := make([]complex128, h+1), make([]complex128, h)
			splitGo(want, z, tb.split, h)
			unsplitGo(wantZ, coeff, tb.split, tb.rev, h)
			for _, im := range impls {
				got, gotZ := make([]complex128, h+1), make([]complex128, h)
				im.split(got, z, tb.split, h)
				if i := same(got, want); i >= 0 {
					t.Fatalf("n=%d trial %d, %s split: [%d] = %v, splitGo %v", n, trial, im.name, i, got[i], want[i])
				}
				im.unsplit(gotZ, coeff, tb.split, tb.rev, h)
				if i := same(gotZ, wantZ); i >= 0 {
					t.Fatalf("n=%d trial %d, %s unsplit: z[%d] = %v, unsplitGo %v", n, trial, im.name, i, gotZ[i], wantZ[i])
				}
			}
			got, want2 := make([]float64, 2*h), make([]float64, 2*h)
			conjTo(got, z)
			conjToGo(want2, z)
			if i := firstDiff(got, want2); i >= 0 {
				t.Fatalf("n=%d trial %d, conjTo: [%d] = %v, conjToGo %v", n, trial, i, got[i], want2[i])
			}
		}
	}
}

// TestFirstStagesMatchGo checks the vector first two stages, alone and
// fused with the bit-reversed gather, against first2Go and gatherGo bit
// for bit (any NaN for a NaN).
func TestFirstStagesMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	special := []float64{0, math.Copysign(0, -1), 0x1p-1074, math.Inf(1), math.Inf(-1), math.NaN()}
	val := func() float64 {
		if rng.IntN(10) == 0 {
			return special[rng.IntN(len(special))]
		}
		return rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-20))
	}
	for n := 8; n <= 4096; n <<= 1 {
		tb := newFFTTables(n)
		h := tb.h
		for trial := range 20 {
			seq := make([]float64, n)
			for i := range seq {
				seq[i] = val()
			}
			got, want := make([]complex128, h), make([]complex128, h)
			gatherFirst2(got, seq, tb.rev)
			gatherGo(want, seq, tb.rev)
			first2Go(want)
			for _, step := range []string{"gather and first two stages", "first two stages"} {
				for i := range got {
					if !sameBits(real(got[i]), real(want[i])) || !sameBits(imag(got[i]), imag(want[i])) {
						t.Fatalf("n=%d trial %d, %s: [%d] = %v, Go %v", n, trial, step, i, got[i], want[i])
					}
				}
				for i := range got {
					got[i] = complex(val(), val())
				}
				copy(want, got)
				first2(got)
				first2Go(want)
			}
		}
	}
}
