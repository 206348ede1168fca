//go:build !amd64

package audio

// logs sets x[i] = math.Log(x[i]).
func logs(x []float64) { logsGo(x) }
