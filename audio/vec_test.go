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

// The PCM16 kernels give the Go loops' values: every 16-bit sample in, and
// out for values at and around each rounding boundary, beyond full scale,
// signed zeros, infinities and NaN.
func TestPCM16Kernels(t *testing.T) {
	b := make([]byte, 2*65536+6)
	for i := range 65536 + 3 {
		v := uint16(i*40503 + 7)
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 65536 + 3} {
		got, want := make([]float32, n), make([]float32, n)
		pcm16ToFloat(got, b)
		pcm16ToFloatGo(want, b)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("pcm16ToFloat, %d samples: [%d] = %v, Go %v", n, i, got[i], want[i])
			}
		}
	}
	var x []float32
	for k := -32770; k <= 32770; k += 7 {
		for _, d := range []float64{0, 0.5, -0.5, 0.49999, 0.50001, 0.25} {
			v := float32((float64(k) + d) / 32768)
			x = append(x, v, math.Nextafter32(v, 2), math.Nextafter32(v, -2))
		}
	}
	x = append(x, 0, float32(math.Copysign(0, -1)), 1, -1, 1.5, -7, 1e30, -1e30, math.MaxFloat32, -math.MaxFloat32,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-40, -1e-40, 0.4/32768, -0.4/32768)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		x = append(x, float32(rng.NormFloat64()*0.5))
	}
	for _, n := range []int{0, 1, 3, 4, 5, len(x)} {
		got, want := make([]byte, 2*n), make([]byte, 2*n)
		floatToPCM16(got, x[:n])
		floatToPCM16Go(want, x[:n])
		for i := range n {
			if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
				t.Fatalf("floatToPCM16(%v) = %#x%02x, Go %#x%02x", x[i], got[2*i+1], got[2*i], want[2*i+1], want[2*i])
			}
		}
	}
}

// Exps gives math.Exp's bits for every value: across [-700, 700] (the
// vector path, where the CPU has it) with the ends, zeros of both signs,
// values whose x*log2(e) falls next to a half-integer (where the
// rounding to k decides), and, through the one at a time path, values
// beyond ±700, infinities and NaN.
func TestExpsMatchesMathExp(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var x []float64
	for _, v := range []float64{-700, 700, 0, math.Copysign(0, -1), 1e-300, -1e-300, 1, -1, 0.5, 1e-17} {
		x = append(x, v, math.Nextafter(v, 0), math.Nextafter(v, 1000))
	}
	for k := -1009; k <= 1009; k++ {
		h := (float64(k) + 0.5) / math.Log2E
		x = append(x, h, math.Nextafter(h, -1000), math.Nextafter(h, 1000))
	}
	for range 20000 {
		x = append(x, -700+1400*rng.Float64())
	}
	for range 2000 {
		x = append(x, rng.NormFloat64()*3)
	}
	cases := [][]float64{x[:len(x)&^3], x[:5], x[:7]}
	for _, bad := range []float64{700.5, -701, math.Inf(1), math.Inf(-1), math.NaN(), 1e6} {
		cases = append(cases, []float64{1, 2, 3, bad, 5, 6, 7, 8})
	}
	for _, in := range cases {
		got := append([]float64(nil), in...)
		Exps(got)
		for i, v := range in {
			want := math.Exp(v)
			if math.Float64bits(got[i]) != math.Float64bits(want) && !(math.IsNaN(got[i]) && math.IsNaN(want)) {
				t.Fatalf("Exps(%v) = %v (%#x), math.Exp %v (%#x)", v, got[i], math.Float64bits(got[i]), want, math.Float64bits(want))
			}
		}
	}
}

// sincoses gives math.Sincos's bits: across (0, 2π) (Griffin-Lim's
// phases) and on to 2^20, next to every octant boundary (where j and the
// swap change), and, through the one at a time path, zero, negatives,
// infinities and NaN.
func TestSincosesMatchesMathSincos(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	var x []float64
	for k := 1; k < 64; k++ {
		b := float64(k) * math.Pi / 4
		x = append(x, b, math.Nextafter(b, 0), math.Nextafter(b, 1e9))
	}
	for range 20000 {
		x = append(x, 2*math.Pi*rng.Float64())
	}
	for range 2000 {
		x = append(x, math.Ldexp(1+rng.Float64(), rng.IntN(60)-40))
	}
	x = append(x, 1e-300, 0x1p-1074, math.Nextafter(1<<20, 0))
	cases := [][]float64{x, x[:5], x[:7]}
	for _, bad := range []float64{0, math.Copysign(0, -1), -1, 1 << 20, 1e300, math.Inf(1), math.NaN()} {
		cases = append(cases, []float64{1, 2, 3, bad, 5, 6, 7, 8})
	}
	for _, in := range cases {
		s, c := make([]float64, len(in)), make([]float64, len(in))
		sincoses(s, c, in)
		for i, v := range in {
			ws, wc := math.Sincos(v)
			if !sameBits(s[i], ws) || !sameBits(c[i], wc) {
				t.Fatalf("sincoses(%v) = %v, %v; math.Sincos %v, %v", v, s[i], c[i], ws, wc)
			}
		}
	}
}
