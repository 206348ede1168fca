package audio

import "math"

// The non-negative least-squares refinement in MelToMagnitude runs the
// same multiplicative update on every frame it solves. Frames are
// independent, so it solves up to nnlsLanes of them at once with their
// values interleaved (bin k of lane l at k*nnlsLanes+l): each lane then
// sees exactly the operations, in exactly the order, of solving its frame
// alone, and the vector kernel's lanes are those frames.

// nnlsLanes is how many frames one pass of the refinement solves.
const nnlsLanes = 4

// melCSR is the filterbank in compressed rows: band m has weights
// w[off[m]:off[m+1]] for bins start[m], start[m]+1, ...
type melCSR struct {
	start []int
	off   []int
	w     []float64
}

func newMelCSR(fb []melFilter) melCSR {
	c := melCSR{start: make([]int, len(fb)), off: make([]int, len(fb)+1)}
	for m, f := range fb {
		c.start[m] = f.start
		c.w = append(c.w, f.w...)
		c.off[m+1] = len(c.w)
	}
	return c
}

// nnlsScratch holds the interleaved state of one pass: s and num are the
// inputs (bins x lanes), s the output; den and bs are workspace.
type nnlsScratch struct {
	s, num, den, bs []float64
}

func newNNLSScratch(bins, mels int) *nnlsScratch {
	return &nnlsScratch{
		s:   make([]float64, bins*nnlsLanes),
		num: make([]float64, bins*nnlsLanes),
		den: make([]float64, bins*nnlsLanes),
		bs:  make([]float64, mels*nnlsLanes),
	}
}

// nnlsLanesGo runs iters multiplicative updates on every lane of sc:
// bs = B s, den = B^T bs, then s = 0 where num <= 0 and s * (num /
// (den + 1e-30)) elsewhere. Each product is rounded on its own (no fused
// multiply-add), as the scalar melApply and melT round them.
func nnlsLanesGo(sc *nnlsScratch, c melCSR, iters int) {
	const L = nnlsLanes
	s, num, den, bs := sc.s, sc.num, sc.den, sc.bs
	for range iters {
		for m, st := range c.start {
			var e [L]float64
			for j, w := range c.w[c.off[m]:c.off[m+1]] {
				k := (st + j) * L
				for l := range e {
					e[l] += float64(w * s[k+l])
				}
			}
			copy(bs[m*L:(m+1)*L], e[:])
		}
		clear(den)
		for m, st := range c.start {
			v := bs[m*L : (m+1)*L]
			for j, w := range c.w[c.off[m]:c.off[m+1]] {
				k := (st + j) * L
				for l := range L {
					den[k+l] += float64(w * v[l])
				}
			}
		}
		for i, n := range num {
			if n <= 0 {
				s[i] = 0
			} else {
				s[i] *= n / (den[i] + 1e-30)
			}
		}
	}
}

// glProjectGo is one Griffin-Lim projection and extrapolation: t is z
// rescaled to the magnitude mag (or mag with phase 0 where z is about
// zero), c = t + momentum (t - tPrev), and tPrev becomes t. It is the
// complex128 arithmetic Go defines, written out so that each product is
// rounded on its own: t = z * complex(m/r, 0) and momentum * d =
// complex(momentum, 0) * d multiply by the zero imaginary parts too.
func glProjectGo(c, tPrev, z []complex128, mag []float32, momentum float64) {
	z, tPrev, mag = z[:len(c)], tPrev[:len(c)], mag[:len(c)]
	for i, zi := range z {
		re, im := real(zi), imag(zi)
		m := float64(mag[i])
		tr, ti := m, 0.0
		if r := math.Sqrt(float64(re*re) + float64(im*im)); r > 1e-12 {
			q := m / r
			tr = float64(re*q) - float64(im*0)
			ti = float64(re*0) + float64(im*q)
		}
		dr, di := tr-real(tPrev[i]), ti-imag(tPrev[i])
		c[i] = complex(tr+(float64(momentum*dr)-float64(0*di)), ti+(float64(momentum*di)+float64(0*dr)))
		tPrev[i] = complex(tr, ti)
	}
}
