//go:build !amd64

package audio

// sincoses sets s[i], c[i] = math.Sincos(x[i]).
func sincoses(s, c, x []float64) { sincosesGo(s, c, x) }
