package audio

import (
	"math"

	"golang.org/x/sys/cpu"
)

// vectorSincos reports whether sincos4 gives math.Sincos's bits here.
// math.Sincos is Go code: a build whose compiler fuses its products
// (GOAMD64=v3) computes other bits, and the check at start-up then keeps
// the kernel off.
var vectorSincos = cpu.X86.HasAVX2 && sincosMatch()

func sincosMatch() bool {
	x := make([]float64, 0, 64)
	for i := range 64 {
		x = append(x, 0.1+float64(i)*0.0999+1e-9*float64(i%5))
	}
	s, c := make([]float64, len(x)), make([]float64, len(x))
	sincos4(&s[0], &c[0], &x[0], len(x))
	for i, v := range x {
		ws, wc := math.Sincos(v)
		if math.Float64bits(s[i]) != math.Float64bits(ws) || math.Float64bits(c[i]) != math.Float64bits(wc) {
			return false
		}
	}
	return true
}

// sincoses sets s[i], c[i] = math.Sincos(x[i]), bit for bit: four at a
// time with AVX2 when every value is in (0, 2^20) (Griffin-Lim's random
// phases are in (0, 2π)), otherwise one at a time.
func sincoses(s, c, x []float64) {
	n := len(x) &^ 3
	if !vectorSincos || n == 0 || len(s) < len(x) || len(c) < len(x) || !sincosRange(x) {
		sincosesGo(s, c, x)
		return
	}
	sincos4(&s[0], &c[0], &x[0], n)
	sincosesGo(s[n:], c[n:], x[n:])
}

//go:noescape
func sincos4(s, c, x *float64, n int)
