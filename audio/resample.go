package audio

import (
	"fmt"
	"math"
)

// ResampleConfig tunes the resampler's low-pass filter. A zero field takes
// its default.
type ResampleConfig struct {
	// Passband is where the passband ends, as a fraction of the lower of the
	// two Nyquist frequencies; the stopband starts at that Nyquist frequency,
	// so nothing above it aliases. Default 0.9 (7.2 kHz at 16 kHz out).
	Passband float64
	// Attenuation is the stopband attenuation in dB. Default 80.
	Attenuation float64
	// MaxPhases bounds the filter table: a ratio whose reduced form out/in =
	// L/M has L <= MaxPhases gets one exact filter per phase; a larger L
	// (e.g. 44100 -> 16001) interpolates linearly between MaxPhases+1 phases.
	// Default 1024.
	MaxPhases int
}

func (c ResampleConfig) withDefaults() (ResampleConfig, error) {
	if c.Passband == 0 {
		c.Passband = 0.9
	}
	if c.Attenuation == 0 {
		c.Attenuation = 80
	}
	if c.MaxPhases == 0 {
		c.MaxPhases = 1024
	}
	switch {
	case !(c.Passband > 0 && c.Passband < 1):
		return c, fmt.Errorf("audio: ResampleConfig.Passband is %g: want in (0, 1)", c.Passband)
	case !(c.Attenuation >= 20 && c.Attenuation <= 200):
		return c, fmt.Errorf("audio: ResampleConfig.Attenuation is %g dB: want 20..200", c.Attenuation)
	case c.MaxPhases < 2 || c.MaxPhases > 1<<16:
		return c, fmt.Errorf("audio: ResampleConfig.MaxPhases is %d: want 2..65536", c.MaxPhases)
	}
	return c, nil
}

// maxResampleRate bounds the rates NewResampler accepts, so that index
// arithmetic (sample index x reduced rate) cannot overflow int64 for any
// realistic stream length.
const maxResampleRate = 1 << 22

// Resampler converts a stream of samples from one rate to another with a
// Kaiser-windowed sinc filter, applied as a polyphase filter bank. Output
// sample n is taken at input time n*in/out with no added delay, so a whole
// signal resampled in one go or in chunks gives the same samples. A
// Resampler is not safe for concurrent use; the filter is cheap to build.
type Resampler struct {
	inRate, outRate int
	l, m            int64 // out/in reduced to lowest terms: L/M
	half            int   // K: taps reach K-1 samples back and K ahead
	taps            int   // 2K
	phases          int   // rows in coef
	exact           bool  // one row per phase (L rows), else interpolate
	coef            []float32

	// Stream state. buf holds input samples with absolute indices
	// [bufStart, bufStart+len(buf)); indices < 0 are zeros.
	buf      []float32
	bufStart int64
	nIn      int64 // input samples received
	nOut     int64 // index of the next output sample
}

// NewResampler builds a resampler from inRate to outRate (Hz).
func NewResampler(inRate, outRate int, cfg ResampleConfig) (*Resampler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if inRate <= 0 || inRate > maxResampleRate {
		return nil, fmt.Errorf("audio: input rate %d Hz: want 1..%d", inRate, maxResampleRate)
	}
	if outRate <= 0 || outRate > maxResampleRate {
		return nil, fmt.Errorf("audio: output rate %d Hz: want 1..%d", outRate, maxResampleRate)
	}
	g := gcd(inRate, outRate)
	r := &Resampler{inRate: inRate, outRate: outRate, l: int64(outRate / g), m: int64(inRate / g)}

	// Design in units of input samples. rho scales the band edges down when
	// decimating, so the cutoff sits below the output Nyquist frequency.
	rho := min(1, float64(outRate)/float64(inRate))
	stop := 0.5 * rho           // cycles per input sample
	pass := stop * cfg.Passband // passband edge
	cutoff := (pass + stop) / 2 // the sinc's -6 dB point
	width := stop - pass        // transition width
	a := cfg.Attenuation
	// Kaiser's estimates of the window length and shape for attenuation a.
	length := (a - 7.95) / (14.36 * width)
	var beta float64
	switch {
	case a > 50:
		beta = 0.1102 * (a - 8.7)
	case a >= 21:
		beta = 0.5842*math.Pow(a-21, 0.4) + 0.07886*(a-21)
	}
	r.half = max(1, int(math.Ceil(length/2)))
	r.taps = 2 * r.half

	r.exact = r.l <= int64(cfg.MaxPhases)
	if r.exact {
		r.phases = int(r.l)
	} else {
		r.phases = cfg.MaxPhases + 1
	}
	r.coef = make([]float32, r.phases*r.taps)
	w := float64(r.half)
	i0b := besselI0(beta)
	row := make([]float64, r.taps)
	for p := 0; p < r.phases; p++ {
		var frac float64
		if r.exact {
			frac = float64(p) / float64(r.l)
		} else {
			frac = float64(p) / float64(cfg.MaxPhases)
		}
		var sum float64
		for k := range row {
			// Tap k weighs input sample i-K+1+k for an output at time i+frac.
			t := frac + float64(r.half-1-k)
			h := 0.0
			if math.Abs(t) < w {
				u := t / w
				h = 2 * cutoff * sinc(2*cutoff*t) * besselI0(beta*math.Sqrt(1-u*u)) / i0b
			}
			row[k] = h
			sum += h
		}
		// Unit DC gain in every phase keeps a constant input constant.
		for k, h := range row {
			r.coef[p*r.taps+k] = float32(h / sum)
		}
	}
	r.Reset()
	return r, nil
}

// InRate and OutRate are the rates the resampler converts between.
func (r *Resampler) InRate() int  { return r.inRate }
func (r *Resampler) OutRate() int { return r.outRate }

// Taps is the filter length in input samples, for cost estimates.
func (r *Resampler) Taps() int { return r.taps }

// Reset forgets the stream, keeping the filter.
func (r *Resampler) Reset() {
	r.buf = make([]float32, r.half, r.half+4096)
	r.bufStart = -int64(r.half)
	r.nIn, r.nOut = 0, 0
}

// Process feeds in and appends to dst every output sample whose input is
// now complete; the rest come with later calls or Flush.
func (r *Resampler) Process(dst, in []float32) []float32 {
	r.buf = append(r.buf, in...)
	r.nIn += int64(len(in))
	dst = r.run(dst, math.MaxInt64)
	r.trim()
	return dst
}

// Flush ends the stream: it appends the remaining output samples to dst, so
// that the stream gives ceil(inputs*out/in) samples in all, and resets the
// resampler for a new stream.
func (r *Resampler) Flush(dst []float32) []float32 {
	r.buf = append(r.buf, make([]float32, r.half)...) // zeros past the end
	total := (r.nIn*r.l + r.m - 1) / r.m
	dst = r.run(dst, total)
	r.Reset()
	return dst
}

// run produces outputs n < limit while their taps lie inside buf.
func (r *Resampler) run(dst []float32, limit int64) []float32 {
	end := r.bufStart + int64(len(r.buf))
	for n := r.nOut; n < limit; n++ {
		pos := n * r.m
		i := pos / r.l
		if i+int64(r.half) >= end {
			break
		}
		x := r.buf[i-int64(r.half)+1-r.bufStart:]
		x = x[:r.taps]
		var y float32
		if r.exact {
			p := int(pos % r.l)
			y = dot(r.coef[p*r.taps:(p+1)*r.taps], x)
		} else {
			f := float64(pos%r.l) / float64(r.l) * float64(r.phases-1)
			p := int(f)
			if p == r.phases-1 {
				p--
			}
			a := float32(f - float64(p))
			y0 := dot(r.coef[p*r.taps:(p+1)*r.taps], x)
			y1 := dot(r.coef[(p+1)*r.taps:(p+2)*r.taps], x)
			y = y0 + a*(y1-y0)
		}
		dst = append(dst, y)
		r.nOut = n + 1
	}
	return dst
}

// trim drops input no future output needs.
func (r *Resampler) trim() {
	need := r.nOut*r.m/r.l - int64(r.half) + 1
	if drop := need - r.bufStart; drop > 0 {
		drop = min(drop, int64(len(r.buf)))
		n := copy(r.buf, r.buf[drop:])
		r.buf = r.buf[:n]
		r.bufStart += drop
	}
}

// dot is the filter inner loop, unrolled by four; len(x) == len(h).
func dot(h, x []float32) float32 {
	x = x[:len(h)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(h); i += 4 {
		s0 += h[i] * x[i]
		s1 += h[i+1] * x[i+1]
		s2 += h[i+2] * x[i+2]
		s3 += h[i+3] * x[i+3]
	}
	for ; i < len(h); i++ {
		s0 += h[i] * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Resample converts c to outRate with the default filter. A clip already at
// outRate is returned as a copy.
func Resample(c Clip, outRate int) (Clip, error) {
	if c.Rate == outRate && outRate > 0 {
		return Clip{Rate: outRate, Samples: append([]float32(nil), c.Samples...)}, nil
	}
	r, err := NewResampler(c.Rate, outRate, ResampleConfig{})
	if err != nil {
		return Clip{}, err
	}
	return r.Clip(c)
}

// Clip resamples a whole clip in one go, forgetting any stream in progress.
// Designing the filter costs more than resampling a short clip, so callers
// that convert many clips keep one Resampler per goroutine and call this.
func (r *Resampler) Clip(c Clip) (Clip, error) {
	if c.Rate != r.inRate {
		return Clip{}, fmt.Errorf("audio: clip at %d Hz given to a %d -> %d Hz resampler", c.Rate, r.inRate, r.outRate)
	}
	r.Reset()
	n := (int64(len(c.Samples))*r.l + r.m - 1) / r.m
	out := r.Process(make([]float32, 0, n), c.Samples)
	return Clip{Rate: r.outRate, Samples: r.Flush(out)}, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// besselI0 is the modified Bessel function of the first kind, order 0, by
// its power series (fast to converge for the Kaiser betas used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	q := x * x / 4
	for k := 1; k < 500; k++ {
		term *= q / float64(k*k)
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return sum
}
