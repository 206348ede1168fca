package audio

import "golang.org/x/sys/cpu"

// stagesFrom8 runs the decimation-in-time stages of size 8 and up over z,
// with AVX2 two butterflies per instruction (fft_amd64.s).
func (p *pow2FFT) stagesFrom8() {
	if !cpu.X86.HasAVX2 {
		p.stagesFrom8Go()
		return
	}
	z, h, stw := p.z, p.t.h, p.t.stw
	off := 0
	for size := 8; size <= h; size <<= 1 {
		half := size >> 1
		fftStage(&z[0], h, half, &stw[off])
		off += half
	}
}

//go:noescape
func fftStage(z *complex128, h int, half int, tw *complex128)
