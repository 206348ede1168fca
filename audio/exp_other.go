//go:build !amd64

package audio

// Exps sets x[i] = math.Exp(x[i]).
func Exps(x []float64) { expsGo(x) }
