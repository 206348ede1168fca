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

// overlapAdd is overlapAddGo.
func overlapAdd(out, frame, w []float64, scale float64) { overlapAddGo(out, frame, w, scale) }

// mulTo is mulToGo.
func mulTo(dst, x, w []float64) { mulToGo(dst, x, w) }

// split is splitGo.
func split(dst, z, tw []complex128, h int) { splitGo(dst, z, tw, h) }

// unsplit is unsplitGo.
func unsplit(z, coeff, tw []complex128, rev []int32, h int) { unsplitGo(z, coeff, tw, rev, h) }

// conjTo is conjToGo.
func conjTo(dst []float64, z []complex128) { conjToGo(dst, z) }

// first2 is first2Go.
func first2(z []complex128) { first2Go(z) }

// gatherFirst2 is gatherGo, then first2Go.
func gatherFirst2(z []complex128, seq []float64, rev []int32) {
	gatherGo(z, seq, rev)
	first2Go(z)
}

// pcm16ToFloat is pcm16ToFloatGo.
func pcm16ToFloat(out []float32, b []byte) { pcm16ToFloatGo(out, b) }

// floatToPCM16 is floatToPCM16Go.
func floatToPCM16(out []byte, x []float32) { floatToPCM16Go(out, x) }
