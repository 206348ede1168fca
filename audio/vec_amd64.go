package audio

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

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

// windowFrame sets dst[i] = float64(x[i]) * w[i]: with AVX2 four at a
// time (the conversion is exact and the product one IEEE multiply, so the
// values are the loop's).
func windowFrame(dst []float64, x []float32, w []float64) {
	n := len(dst) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || len(x) < len(dst) || len(w) < len(dst) {
		windowFrameGo(dst, x, w)
		return
	}
	window4(&dst[0], &x[0], &w[0], n)
	windowFrameGo(dst[n:], x[n:], w[n:])
}

//go:noescape
func window4(dst *float64, x *float32, w *float64, n int)

// nnlsRun is nnlsLanesGo, with AVX2 one vector per bin.
func nnlsRun(sc *nnlsScratch, c melCSR, iters int) {
	if !cpu.X86.HasAVX2 || iters <= 0 || len(c.start) == 0 {
		nnlsLanesGo(sc, c, iters)
		return
	}
	nnls4(&sc.s[0], &sc.num[0], &sc.den[0], &sc.bs[0], &c.start[0], &c.off[0], unsafe.SliceData(c.w), len(c.start), len(sc.s)/nnlsLanes, iters)
}

//go:noescape
func nnls4(s, num, den, bs *float64, start, off *int, w *float64, mels, bins, iters int)

// glProject is glProjectGo, with AVX2 four bins at a time.
func glProject(c, tPrev, z []complex128, mag []float32, momentum float64) {
	n := len(c) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || len(z) < len(c) || len(tPrev) < len(c) || len(mag) < len(c) {
		glProjectGo(c, tPrev, z, mag, momentum)
		return
	}
	glProject4(&c[0], &tPrev[0], &z[0], &mag[0], n, momentum)
	glProjectGo(c[n:], tPrev[n:], z[n:], mag[n:], momentum)
}

//go:noescape
func glProject4(c, tPrev, z *complex128, mag *float32, n int, momentum float64)

// overlapAdd is overlapAddGo, with AVX2 four at a time (the same two
// products and sum per value).
func overlapAdd(out, frame, w []float64, scale float64) {
	n := len(out) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || len(frame) < len(out) || len(w) < len(out) {
		overlapAddGo(out, frame, w, scale)
		return
	}
	overlapAdd4(&out[0], &frame[0], &w[0], n, scale)
	overlapAddGo(out[n:], frame[n:], w[n:], scale)
}

// mulTo is mulToGo, with AVX2 four at a time.
func mulTo(dst, x, w []float64) {
	n := len(dst) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || len(x) < len(dst) || len(w) < len(dst) {
		mulToGo(dst, x, w)
		return
	}
	mulTo4(&dst[0], &x[0], &w[0], n)
	mulToGo(dst[n:], x[n:], w[n:])
}

//go:noescape
func overlapAdd4(out, frame, w *float64, n int, scale float64)

//go:noescape
func mulTo4(dst, x, w *float64, n int)

// split is splitGo, with AVX2 two bins at a time (split_amd64.s).
func split(dst, z, tw []complex128, h int) {
	if !cpu.X86.HasAVX2 || h < 4 || h&(h-1) != 0 || len(dst) < h+1 || len(z) < h || len(tw) < h/2+1 {
		splitGo(dst, z, tw, h)
		return
	}
	split2(&dst[0], &z[0], &tw[0], h)
}

// unsplit is unsplitGo, with AVX2 two bins at a time.
func unsplit(z, coeff, tw []complex128, rev []int32, h int) {
	if !cpu.X86.HasAVX2 || h < 4 || h&(h-1) != 0 || len(z) < h || len(coeff) < h+1 || len(tw) < h/2+1 || len(rev) < h {
		unsplitGo(z, coeff, tw, rev, h)
		return
	}
	unsplit2(&z[0], &coeff[0], &tw[0], &rev[0], h)
}

// conjTo is conjToGo, with AVX2 two values at a time.
func conjTo(dst []float64, z []complex128) {
	n := len(z) &^ 1
	if !cpu.X86.HasAVX2 || n == 0 || len(dst) < 2*len(z) {
		conjToGo(dst, z)
		return
	}
	conj4(&dst[0], &z[0], n)
	conjToGo(dst[2*n:], z[n:])
}

//go:noescape
func split2(dst, z, tw *complex128, h int)

//go:noescape
func unsplit2(z, coeff, tw *complex128, rev *int32, h int)

//go:noescape
func conj4(dst *float64, z *complex128, n int)

// first2 is first2Go, with AVX2 one group of four at a time.
func first2(z []complex128) {
	if !cpu.X86.HasAVX2 || len(z) < 4 || len(z)%4 != 0 {
		first2Go(z)
		return
	}
	first2x4(&z[0], len(z))
}

// gatherFirst2 is gatherGo, then first2Go: with AVX2 each group of four
// is loaded from its bit-reversed places and run through both stages at
// once. rev must be a bit reversal (its own inverse).
func gatherFirst2(z []complex128, seq []float64, rev []int32) {
	h := len(rev)
	if !cpu.X86.HasAVX2 || h < 4 || h%4 != 0 || len(z) < h || len(seq) < 2*h {
		gatherGo(z, seq, rev)
		first2Go(z)
		return
	}
	gatherFirst2x4(&z[0], &seq[0], &rev[0], h)
}

//go:noescape
func first2x4(z *complex128, n int)

//go:noescape
func gatherFirst2x4(z *complex128, seq *float64, rev *int32, h int)

// pcm16ToFloat is pcm16ToFloatGo, with AVX2 eight samples at a time.
func pcm16ToFloat(out []float32, b []byte) {
	n := len(out) &^ 7
	if !cpu.X86.HasAVX2 || n == 0 || len(b) < 2*len(out) {
		pcm16ToFloatGo(out, b)
		return
	}
	pcm16ToFloat8(&out[0], &b[0], n)
	pcm16ToFloatGo(out[n:], b[2*n:])
}

// floatToPCM16 is floatToPCM16Go, with AVX2 four samples at a time in
// float64, as ToPCM16 computes them.
func floatToPCM16(out []byte, x []float32) {
	n := len(x) &^ 3
	if !cpu.X86.HasAVX2 || n == 0 || len(out) < 2*len(x) {
		floatToPCM16Go(out, x)
		return
	}
	floatToPCM16x4(&out[0], &x[0], n)
	floatToPCM16Go(out[2*n:], x[n:])
}

//go:noescape
func pcm16ToFloat8(out *float32, b *byte, n int)

//go:noescape
func floatToPCM16x4(out *byte, x *float32, n int)
