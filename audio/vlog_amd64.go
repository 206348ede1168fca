package audio

import "golang.org/x/sys/cpu"

// logs sets x[i] = math.Log(x[i]), bit for bit, four at a time with AVX2
// when every value is positive, normal and finite (the front end's mel
// energies, floored at LogFloor, always are); otherwise one at a time.
func logs(x []float64) {
	n := len(x) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || !allNormal(x) {
		logsGo(x)
		return
	}
	logs4(&x[0], n)
	logsGo(x[n:])
}

//go:noescape
func logs4(x *float64, n int)
