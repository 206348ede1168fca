package audio

import (
	"math"
	"math/rand/v2"
	"testing"
)

// logs gives math.Log's bits for every input: across the whole normal
// range, at the sqrt(2)/2 branch of its frexp, and, through the one at a
// time path, for zero, negatives, infinities, NaN and subnormals.
func TestLogsMatchesMathLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	hs := math.Sqrt2 / 2
	// All positive, normal and finite, so that the vector path takes them.
	var special []float64
	for _, v := range []float64{1, 2, 0.5, hs, math.Sqrt2, 1e-10, 1e10} {
		special = append(special, v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1)))
	}
	special = append(special, 0x1p-1022, math.Nextafter(0x1p-1022, 1), math.MaxFloat64, math.Nextafter(math.MaxFloat64, 0))
	// The frexp branch at sqrt(2)/2, at every exponent (some exponents
	// round differently when f1 == sqrt(2)/2 takes the other branch).
	for e := -1021; e <= 1023; e++ {
		special = append(special, math.Ldexp(hs, e), math.Ldexp(math.Nextafter(hs, 0), e), math.Ldexp(math.Nextafter(hs, 1), e))
	}
	if !allNormal(special) {
		t.Fatal("the special values would not reach the vector path")
	}
	cases := [][]float64{special}
	for range 200 {
		x := make([]float64, 1+rng.IntN(90))
		for i := range x {
			x[i] = math.Ldexp(1+rng.Float64(), rng.IntN(2045)-1022)
		}
		cases = append(cases, x)
	}
	for _, bad := range []float64{0, math.Copysign(0, -1), -1, math.Inf(1), math.Inf(-1), math.NaN(), 0x1p-1074, 0x1p-1030} {
		cases = append(cases, []float64{1, 2, 3, bad, 5, 6, 7, 8})
	}
	for _, x := range cases {
		got := append([]float64(nil), x...)
		logs(got)
		for i, v := range x {
			want := math.Log(v)
			if math.Float64bits(got[i]) != math.Float64bits(want) && !(math.IsNaN(got[i]) && math.IsNaN(want)) {
				t.Fatalf("logs(%v) = %v (%#x), math.Log %v (%#x)", v, got[i], math.Float64bits(got[i]), want, math.Float64bits(want))
			}
		}
	}
}

func TestAllNormal(t *testing.T) {
	tests := []struct {
		x    []float64
		want bool
	}{
		{[]float64{1, 1e-300, math.MaxFloat64, 0x1p-1022}, true},
		{[]float64{1, 0}, false},
		{[]float64{math.Copysign(0, -1)}, false},
		{[]float64{-2}, false},
		{[]float64{math.Inf(1)}, false},
		{[]float64{math.NaN()}, false},
		{[]float64{0x1p-1074}, false},
		{nil, true},
	}
	for _, tc := range tests {
		if got := allNormal(tc.x); got != tc.want {
			t.Errorf("allNormal(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
}

func BenchmarkLogs80(b *testing.B) {
	x := make([]float64, 80)
	y := make([]float64, 80)
	for i := range x {
		x[i] = math.Exp(float64(i%17) - 8)
	}
	for b.Loop() {
		copy(y, x)
		logs(y)
	}
}

func TestWindowFrameMatchesLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for n := range 40 {
		x := make([]float32, n)
		w := make([]float64, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
			w[i] = rng.Float64()
		}
		got := make([]float64, n)
		windowFrame(got, x, w)
		for i := range got {
			if want := float64(x[i]) * w[i]; math.Float64bits(got[i]) != math.Float64bits(want) {
				t.Fatalf("n=%d: [%d] = %v, want %v", n, i, got[i], want)
			}
		}
	}
}

// The overlap-add and windowing kernels give their Go loops' bits on
// every length, with signed zeros, subnormals, infinities and NaNs mixed
// in (any NaN for a NaN).
func TestOverlapAddAndMulTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	special := []float64{0, math.Copysign(0, -1), 0x1p-1074, -0x1p-1060, math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64}
	val := func() float64 {
		if rng.IntN(8) == 0 {
			return special[rng.IntN(len(special))]
		}
		return rng.NormFloat64() * math.Pow(2, float64(rng.IntN(80)-40))
	}
	fill := func(n int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = val()
		}
		return x
	}
	for trial := range 400 {
		n := trial % 23
		out, frame, w := fill(n), fill(n), fill(n)
		scale := []float64{1.0 / 512, val()}[trial%2]
		got, want := append([]float64(nil), out...), append([]float64(nil), out...)
		overlapAdd(got, frame, w, scale)
		overlapAddGo(want, frame, w, scale)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("overlapAdd, %d values: [%d] = %v, Go loop %v", n, i, got[i], want[i])
		}
		mulTo(got, frame, w)
		mulToGo(want, frame, w)
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("mulTo, %d values: [%d] = %v, Go loop %v", n, i, got[i], want[i])
		}
	}
}

// firstDiff is the first index where x and y differ in bits (any NaN
// matching any NaN), or -1.
func firstDiff(x, y []float64) int {
	for i := range x {
		if math.Float64bits(x[i]) != math.Float64bits(y[i]) && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
			return i
		}
	}
	return -1
}
