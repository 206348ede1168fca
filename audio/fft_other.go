//go:build !amd64

package audio

// stagesFrom8 runs the decimation-in-time stages of size 8 and up over z.
func (p *pow2FFT) stagesFrom8() { p.stagesFrom8Go() }
