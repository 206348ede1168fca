package audio

import (
	"math"

	"golang.org/x/sys/cpu"
)

// vectorExp reports whether exps4 gives math.Exp's bits here: math.Exp
// takes its fused multiply-add path on a CPU with AVX and FMA, the path
// exps4 copies, unless GODEBUG turned one off for the runtime alone; a
// check at start-up on values that tell the paths apart settles it.
var vectorExp = cpu.X86.HasAVX2 && cpu.X86.HasFMA && expsMatch()

func expsMatch() bool {
	probe := make([]float64, 0, 64)
	for i := range 64 {
		probe = append(probe, -700+float64(i)*21.9+0.123456789*float64(i%7))
	}
	got := append([]float64(nil), probe...)
	exps4(&got[0], len(got))
	for i, v := range probe {
		if math.Float64bits(got[i]) != math.Float64bits(math.Exp(v)) {
			return false
		}
	}
	return true
}

// Exps sets x[i] = math.Exp(x[i]), bit for bit: four at a time with AVX2
// and FMA when every value lies in [-700, 700] (as differences of
// log-mel values do), otherwise one at a time.
func Exps(x []float64) {
	n := len(x) &^ 3
	if !vectorExp || n == 0 || !expRange(x) {
		expsGo(x)
		return
	}
	exps4(&x[0], n)
	expsGo(x[n:])
}

//go:noescape
func exps4(x *float64, n int)
