package audio

import (
	"math"
	"math/bits"

	"gonum.org/v1/gonum/dsp/fourier"
)

// realFFT is the real-input DFT of one size, with gonum's conventions:
// Coefficients gives the NFFT/2+1 non-negative-frequency coefficients,
// Sequence is the unnormalized inverse (n times the input of Coefficients).
// A value holds scratch space, so each goroutine needs its own; plans of
// one analyzer share their read-only tables.
type realFFT interface {
	Coefficients(dst []complex128, seq []float64) []complex128
	Sequence(dst []float64, coeff []complex128) []float64
}

// fftTables are the read-only tables of a power-of-two real FFT of length
// n computed as a complex FFT of length n/2 (the even samples as real
// parts, the odd ones as imaginary parts) and a split step.
type fftTables struct {
	n, h  int
	rev   []int32      // bit reversal of log2(h) bits
	tw    []complex128 // exp(-2πik/h), k < h/2
	split []complex128 // exp(-2πik/n), k <= h/2
	// stw holds each stage's twiddles contiguously, stages of size 8 and
	// up in turn: tw[k*h/size] for k < size/2 (copies, the same values).
	stw []complex128
}

// newFFTTables returns the tables for n, or nil when n is not a power of
// two of at least 8 (those sizes go to gonum).
func newFFTTables(n int) *fftTables {
	if n < 8 || n&(n-1) != 0 {
		return nil
	}
	h := n / 2
	t := &fftTables{n: n, h: h, rev: make([]int32, h), tw: make([]complex128, h/2), split: make([]complex128, h/2+1)}
	lg := bits.TrailingZeros(uint(h))
	for i := range h {
		t.rev[i] = int32(bits.Reverse32(uint32(i)) >> (32 - lg))
	}
	for k := range t.tw {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(h))
		t.tw[k] = complex(c, s)
	}
	for k := range t.split {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		t.split[k] = complex(c, s)
	}
	for size := 8; size <= h; size <<= 1 {
		for k := range size / 2 {
			t.stw = append(t.stw, t.tw[k*(h/size)])
		}
	}
	return t
}

// plan returns a transform of length n: the tables' own when they exist,
// gonum's mixed-radix one for other lengths.
func (t *fftTables) plan(n int) realFFT {
	if t == nil {
		return fourier.NewFFT(n)
	}
	return &pow2FFT{t: t, z: make([]complex128, t.h)}
}

// pow2FFT is a radix-2 FFT over fftTables with its own scratch. It is
// about three times faster than gonum's general-length FFT at the front
// end's 512 points, which is most of a translation's CPU.
type pow2FFT struct {
	t *fftTables
	z []complex128
}

// butterflies runs the decimation-in-time stages over z, whose input is
// already in bit-reversed order.
func (p *pow2FFT) butterflies() {
	first2(p.z)
	p.stagesFrom8()
}

// first2Go runs the first two stages over z (len a multiple of 4). Their
// twiddles are 1 and -i: no multiplies.
func first2Go(z []complex128) {
	for s := 0; s+4 <= len(z); s += 4 {
		q := z[s : s+4 : s+4]
		a, b, c, d := q[0]+q[1], q[0]-q[1], q[2]+q[3], q[2]-q[3]
		d = complex(imag(d), -real(d)) // -i·d
		q[0], q[2] = a+c, a-c
		q[1], q[3] = b+d, b-d
	}
}

// gatherGo sets z[j] to the pair of samples seq[2i], seq[2i+1] for j =
// rev[i]: the FFT's input in bit-reversed order.
func gatherGo(z []complex128, seq []float64, rev []int32) {
	for i, j := range rev {
		z[j] = complex(seq[2*i], seq[2*i+1])
	}
}

// stagesFrom8Go is stagesFrom8 in Go: the definition the vector kernels
// match bit for bit.
func (p *pow2FFT) stagesFrom8Go() {
	z, h, tw := p.z, p.t.h, p.t.tw
	for size := 8; size <= h; size <<= 1 {
		half, step := size>>1, h/size
		for s := 0; s < h; s += size {
			lo := z[s : s+half : s+half]
			hi := z[s+half : s+size : s+size]
			for k := range lo {
				w, x := tw[k*step], hi[k]
				// Go's complex product, each term rounded: the explicit
				// conversions keep a compiler for a CPU with FMA
				// (GOAMD64=v3, arm64) from fusing it, so this loop and
				// the vector kernel agree on every build.
				b := complex(float64(real(x)*real(w))-float64(imag(x)*imag(w)), float64(real(x)*imag(w))+float64(imag(x)*real(w)))
				a := lo[k]
				lo[k], hi[k] = a+b, a-b
			}
		}
	}
}

// Coefficients sets dst (len n/2+1, allocated when nil) to the DFT of seq
// (len n) and returns it.
func (p *pow2FFT) Coefficients(dst []complex128, seq []float64) []complex128 {
	t := p.t
	h, z := t.h, p.z
	if dst == nil {
		dst = make([]complex128, h+1)
	}
	dst, seq = dst[:h+1], seq[:2*h]
	gatherFirst2(z, seq, t.rev)
	p.stagesFrom8()
	// With E and O the DFTs of the even and odd samples,
	// Z[k] = E[k] + iO[k] and X[k] = E[k] + exp(-2πik/n) O[k].
	dst[0] = complex(real(z[0])+imag(z[0]), 0)
	dst[h] = complex(real(z[0])-imag(z[0]), 0)
	split(dst, z, t.split, h)
	return dst
}

// Sequence sets dst (len n, allocated when nil) to the unnormalized inverse
// DFT of the non-negative-frequency coefficients coeff (len n/2+1; the
// imaginary parts of the first and last are ignored, as for any real
// signal) and returns it.
func (p *pow2FFT) Sequence(dst []float64, coeff []complex128) []float64 {
	t := p.t
	h, z := t.h, p.z
	if dst == nil {
		dst = make([]float64, 2*h)
	}
	dst, coeff = dst[:2*h], coeff[:h+1]
	x0, xh := real(coeff[0]), real(coeff[h])
	// Undo the split: E[k] = X[k] + conj X[h-k], O[k] = (X[k] - conj
	// X[h-k]) exp(2πik/n) (both twice their forward values, which makes
	// the result n times the signal), then Z = E + iO, stored conjugated
	// so that the forward butterflies compute the inverse.
	z[0] = complex(x0+xh, -(x0 - xh))
	unsplit(z, coeff, t.split, t.rev, h)
	p.butterflies()
	conjTo(dst, z)
	return dst
}

// splitGo sets dst[1..h-1] (h = n/2) to the DFT of a real sequence of n
// samples from z, the DFT of its even samples plus i times that of its odd
// ones. With E and O those two, Z[k] = E[k] + iO[k] and X[k] = E[k] +
// exp(-2πik/n) O[k]. It is Go's complex128 arithmetic written out (the
// products with 0.5 and -0.5i, their zero parts included), each product
// rounded on its own so that no build fuses one and every build, with or
// without the vector kernel, gives the same bits.
func splitGo(dst, z, tw []complex128, h int) {
	for k := 1; k <= h/2; k++ {
		ar, ai := real(z[k]), imag(z[k])
		br, bi := real(z[h-k]), -imag(z[h-k])
		sr, si := ar+br, ai+bi // a + conj(b)
		dr, di := ar-br, ai-bi // a - conj(b)
		// e = s * 0.5, o = d * -0.5i
		er, ei := float64(sr*0.5)-float64(si*0), float64(sr*0)+float64(si*0.5)
		or, oi := float64(dr*0)-float64(di*-0.5), float64(dr*-0.5)+float64(di*0)
		wr, wi := real(tw[k]), imag(tw[k])
		dst[k] = complex(er+(float64(wr*or)-float64(wi*oi)), ei+(float64(wr*oi)+float64(wi*or)))
		// X[h-k] = conj(E[k]) - conj(w) conj(O[k]) by the symmetry of E, O:
		// conj(e) + (-wr + i wi) (or - i oi).
		dst[h-k] = complex(er+(float64(-wr*or)-float64(wi*-oi)), -ei+(float64(-wr*-oi)+float64(wi*or)))
	}
}

// unsplitGo undoes splitGo for Sequence: with X the coefficients, E[k] =
// X[k] + conj X[h-k] and O[k] = (X[k] - conj X[h-k]) exp(2πik/n) (both
// twice their forward values, which makes the result n times the
// signal), and z[rev[k]] = conj(E + iO) for k = 1..h-1, conjugated so that
// the forward butterflies compute the inverse. E and O are DFTs of real
// sequences, so E[h-k] = conj E[k] and O[h-k] = conj O[k]. Each product is
// rounded on its own, as in splitGo.
func unsplitGo(z, coeff, tw []complex128, rev []int32, h int) {
	for k := 1; k <= h/2; k++ {
		ar, ai := real(coeff[k]), imag(coeff[k])
		br, bi := real(coeff[h-k]), -imag(coeff[h-k])
		er, ei := ar+br, ai+bi
		dr, di := ar-br, ai-bi
		wr, wi := real(tw[k]), -imag(tw[k])
		// o = d * conj(w)
		or, oi := float64(dr*wr)-float64(di*wi), float64(dr*wi)+float64(di*wr)
		z[rev[k]] = complex(er+-oi, -(ei + or))
		if k != h-k {
			// conj(e) + i conj(o) = (er + oi) + i(-ei + or)
			z[rev[h-k]] = complex(er+oi, -(-ei + or))
		}
	}
}

// conjToGo sets dst[2j], dst[2j+1] to the real part and the negated
// imaginary part of z[j].
func conjToGo(dst []float64, z []complex128) {
	dst = dst[:2*len(z)]
	for j, v := range z {
		dst[2*j], dst[2*j+1] = real(v), -imag(v)
	}
}
