//go:build !amd64

package audio

// logs sets x[i] = math.Log(x[i]).
func logs(x []float64) { logsGo(x) }

// windowFrame sets dst[i] = float64(x[i]) * w[i].
func windowFrame(dst []float64, x []float32, w []float64) { windowFrameGo(dst, x, w) }

// nnlsRun is nnlsLanesGo.
func nnlsRun(sc *nnlsScratch, c melCSR, iters int) { nnlsLanesGo(sc, c, iters) }

// glProject is glProjectGo.
func glProject(c, tPrev, z []complex128, mag []float32, momentum float64) {
	glProjectGo(c, tPrev, z, mag, momentum)
}
