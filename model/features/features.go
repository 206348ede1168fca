package features

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"babelfish.dev/babelfish/audio"
)

// Frontend turns audio into log-mel frames at one configuration. It is safe
// for concurrent use.
type Frontend struct {
	mel    *audio.MelAnalyzer
	trimDB float64
	pad    int
}

// Config configures a Frontend. A zero field takes its default.
type Config struct {
	// Mel is the log-mel analysis; zero fields take audio.DefaultMelConfig.
	Mel audio.MelConfig `json:"mel"`
	// TrimDB is how far below the loudest frame (in dB of frame power) a
	// leading or trailing frame counts as silence. Default 40.
	TrimDB float64 `json:"trim_db"`
	// TrimPad is how many silent frames are kept on each side of the speech.
	// Default 2.
	TrimPad int `json:"trim_pad"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	d := audio.DefaultMelConfig()
	if c.Mel.SampleRate == 0 {
		c.Mel = d
	}
	if c.TrimDB == 0 {
		c.TrimDB = 40
	}
	if c.TrimPad == 0 {
		c.TrimPad = 2
	}
	return c
}

// NewFrontend validates cfg and builds the analyzer.
func NewFrontend(cfg Config) (*Frontend, error) {
	cfg = cfg.WithDefaults()
	if cfg.TrimDB < 0 || cfg.TrimDB > 200 {
		return nil, fmt.Errorf("features: Config.TrimDB is %g: want 0..200", cfg.TrimDB)
	}
	if cfg.TrimPad < 0 || cfg.TrimPad > 1000 {
		return nil, fmt.Errorf("features: Config.TrimPad is %d: want 0..1000", cfg.TrimPad)
	}
	a, err := audio.NewMelAnalyzer(cfg.Mel)
	if err != nil {
		return nil, err
	}
	return &Frontend{mel: a, trimDB: cfg.TrimDB, pad: cfg.TrimPad}, nil
}

// Analyzer is the frontend's mel analyzer (for inversion).
func (f *Frontend) Analyzer() *audio.MelAnalyzer { return f.mel }

// Rate is the sample rate the frontend analyses at.
func (f *Frontend) Rate() int { return f.mel.Config().SampleRate }

// LogMel resamples c to the frontend's rate when needed and returns its
// log-mel frames with leading and trailing silence trimmed.
func (f *Frontend) LogMel(c audio.Clip) (audio.Spectrogram, error) {
	if c.Rate <= 0 {
		return audio.Spectrogram{}, fmt.Errorf("features: clip rate is %d Hz: want > 0", c.Rate)
	}
	if c.Rate != f.Rate() {
		var err error
		if c, err = audio.Resample(c, f.Rate()); err != nil {
			return audio.Spectrogram{}, err
		}
	}
	return Trim(f.mel.LogMel(c.Samples), f.trimDB, f.pad), nil
}

// FrameEnergy is each frame's log power (natural log of the summed mel
// power), from a natural-log mel spectrogram.
func FrameEnergy(s audio.Spectrogram) []float64 {
	out := make([]float64, s.Frames)
	for t := range s.Frames {
		out[t] = rowEnergy(s.Row(t), rowMax(s.Row(t)))
	}
	return out
}

func rowMax(row []float32) float64 {
	// max is exact and its order does not matter (NaN wins, +0 beats
	// -0), so four running maxima, which need not wait on each other,
	// give the one-at-a-time result.
	m0, m1, m2, m3 := math.Inf(-1), math.Inf(-1), math.Inf(-1), math.Inf(-1)
	for len(row) >= 4 {
		m0, m1 = max(m0, float64(row[0])), max(m1, float64(row[1]))
		m2, m3 = max(m2, float64(row[2])), max(m3, float64(row[3]))
		row = row[4:]
	}
	for _, v := range row {
		m0 = max(m0, float64(v))
	}
	return max(max(m0, m1), max(m2, m3))
}

// rowEnergy is the log-sum-exp of row, whose largest value is m.
func rowEnergy(row []float32, m float64) float64 {
	var buf [128]float64
	e := buf[:0]
	if len(row) > len(buf) {
		e = make([]float64, 0, len(row))
	}
	for _, v := range row {
		e = append(e, float64(v)-m)
	}
	audio.Exps(e) // math.Exp's values, several at a time
	var sum float64
	for _, v := range e {
		sum += v
	}
	return m + math.Log(sum)
}

// Trim drops leading and trailing frames whose power is more than db
// decibels below the loudest frame, keeping pad frames of margin. The result
// shares s's data. A spectrogram with no frame above the threshold is
// returned whole.
//
// It decides exactly as if it had every frame's FrameEnergy, but computes
// few of them: a frame's energy (a log-sum-exp) lies between its largest
// band m and m + log(bands), so only frames whose bounds straddle the
// loudest frame's or the threshold need their exponentials.
func Trim(s audio.Spectrogram, db float64, pad int) audio.Spectrogram {
	if s.Frames == 0 {
		return s
	}
	mx := make([]float64, s.Frames)
	for t := range s.Frames {
		mx[t] = rowMax(s.Row(t))
		if math.IsInf(mx[t], 0) || math.IsNaN(mx[t]) {
			return trimExact(s, db, pad)
		}
	}
	// The log-sum-exp of n terms exceeds the largest by at least 0 and at
	// most log(n); the margin in upper absorbs rounding, many times over.
	logN := math.Log(float64(s.Bins))
	upper := func(m float64) float64 { return m + logN + 1e-9*(1+math.Abs(m)) }
	energy := func(t int) float64 { return rowEnergy(s.Row(t), mx[t]) }
	// The loudest frame: visit frames by their largest band, loudest
	// first, until no frame left can beat the best energy so far.
	order := make([]int, s.Frames)
	for t := range order {
		order[t] = t
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(mx[b], mx[a]) })
	peak := math.Inf(-1)
	for _, t := range order {
		if upper(mx[t]) < peak {
			break
		}
		peak = max(peak, energy(t))
	}
	thr := peak - db*math.Ln10/10
	loud := func(t int) bool {
		switch m := mx[t]; {
		case m >= thr:
			return true
		case upper(m) < thr:
			return false
		}
		return energy(t) >= thr
	}
	first, last := -1, -1
	for t := range s.Frames {
		if loud(t) {
			first = t
			break
		}
	}
	if first < 0 {
		return s
	}
	for t := s.Frames - 1; t >= first; t-- {
		if loud(t) {
			last = t
			break
		}
	}
	return trimmed(s, first, last, pad)
}

// trimExact is Trim computing every frame's energy: for spectrograms with
// non-finite values, where the bounds do not hold.
func trimExact(s audio.Spectrogram, db float64, pad int) audio.Spectrogram {
	e := FrameEnergy(s)
	peak := math.Inf(-1)
	for _, v := range e {
		peak = max(peak, v)
	}
	thr := peak - db*math.Ln10/10
	first, last := -1, -1
	for t, v := range e {
		if v >= thr {
			if first < 0 {
				first = t
			}
			last = t
		}
	}
	if first < 0 {
		return s
	}
	return trimmed(s, first, last, pad)
}

func trimmed(s audio.Spectrogram, first, last, pad int) audio.Spectrogram {
	first = max(0, first-pad)
	last = min(s.Frames-1, last+pad)
	return audio.Spectrogram{Frames: last - first + 1, Bins: s.Bins, Data: s.Data[first*s.Bins : (last+1)*s.Bins]}
}

// Normalize returns a copy of s with each bin's mean removed and the result
// divided by the utterance's overall standard deviation (floored at 1e-3),
// so an utterance's loudness and average spectral tilt (much of what tells
// one voice from another) are removed while its shape over time is kept.
func Normalize(s audio.Spectrogram) audio.Spectrogram {
	out := audio.Spectrogram{Frames: s.Frames, Bins: s.Bins, Data: make([]float32, len(s.Data))}
	if s.Frames == 0 {
		return out
	}
	mean := make([]float64, s.Bins)
	for t := range s.Frames {
		for b, v := range s.Row(t) {
			mean[b] += float64(v)
		}
	}
	for b := range mean {
		mean[b] /= float64(s.Frames)
	}
	var ss float64
	for t := range s.Frames {
		for b, v := range s.Row(t) {
			d := float64(v) - mean[b]
			ss += d * d
		}
	}
	sd := max(math.Sqrt(ss/float64(len(s.Data))), 1e-3)
	for t := range s.Frames {
		row, dst := s.Row(t), out.Row(t)
		for b, v := range row {
			dst[b] = float32((float64(v) - mean[b]) / sd)
		}
	}
	return out
}

// Pool averages s over n equal spans of time (adaptive average pooling) and
// returns n x s.Bins values, row-major. Span boundaries fall between frames
// in proportion, so a frame on a boundary counts in part towards both sides;
// an utterance shorter than n frames is stretched. No frames gives zeros.
func Pool(s audio.Spectrogram, n int) []float32 {
	out := make([]float32, n*s.Bins)
	if s.Frames == 0 || n <= 0 {
		return out
	}
	step := float64(s.Frames) / float64(n)
	acc := make([]float64, s.Bins)
	for i := range n {
		lo, hi := float64(i)*step, float64(i+1)*step
		clear(acc)
		var wsum float64
		for t := int(lo); t < s.Frames && float64(t) < hi; t++ {
			w := min(hi, float64(t+1)) - max(lo, float64(t))
			if w <= 0 {
				continue
			}
			wsum += w
			for b, v := range s.Row(t) {
				acc[b] += w * float64(v)
			}
		}
		for b := range acc {
			out[i*s.Bins+b] = float32(acc[b] / wsum)
		}
	}
	return out
}

// MelCepstrum returns mel cepstra c0..c(order-1) of a natural-log power
// mel spectrogram: with N bands and x the log amplitude (half the log
// power), c_k = (1/N) sum_n x_n cos(pi k (n+1/2) / N), so that
// x ~ c0 + 2 sum_k c_k cos(...), the real-cepstrum convention that the
// usual mel-cepstral distortion constant assumes.
func MelCepstrum(s audio.Spectrogram, order int) audio.Spectrogram {
	return NewCepstrum(s.Bins, 0, min(order, s.Bins)).Apply(s)
}

// Cepstrum computes mel cepstra c_from..c_(to-1) (MelCepstrum's
// convention) of bins-band log-mel frames. Its cosine basis is built once,
// so a caller that converts many utterances keeps one.
type Cepstrum struct {
	bins, from, to int
	basis          []float64 // (to-from) x bins
}

// NewCepstrum returns the transform to cepstra from..to-1 (0 <= from <=
// to <= bins) of bins-band frames.
func NewCepstrum(bins, from, to int) *Cepstrum {
	to = max(min(to, bins), 0)
	from = min(max(from, 0), to)
	c := &Cepstrum{bins: bins, from: from, to: to, basis: make([]float64, (to-from)*bins)}
	for k := from; k < to; k++ {
		row := c.basis[(k-from)*bins : (k-from+1)*bins]
		for i := range row {
			row[i] = 0.5 / float64(bins) * math.Cos(math.Pi/float64(bins)*(float64(i)+0.5)*float64(k))
		}
	}
	return c
}

// Apply returns the cepstra of every frame of s, which must have the bands
// the transform was built for (a programming error otherwise).
func (c *Cepstrum) Apply(s audio.Spectrogram) audio.Spectrogram {
	if s.Bins != c.bins {
		panic(fmt.Sprintf("features: cepstrum of %d bands applied to %d", c.bins, s.Bins))
	}
	order, n := c.to-c.from, s.Bins
	out := audio.Spectrogram{Frames: s.Frames, Bins: order, Data: make([]float32, s.Frames*order)}
	for t := range s.Frames {
		row, dst := s.Row(t), out.Row(t)
		k := 0
		// Four coefficients at a time share each load of the row; each
		// still sums its own terms in band order, so the result is the
		// one-at-a-time loop's to the bit.
		for ; k+4 <= order; k += 4 {
			b0 := c.basis[k*n : (k+1)*n]
			b1 := c.basis[(k+1)*n : (k+2)*n]
			b2 := c.basis[(k+2)*n : (k+3)*n]
			b3 := c.basis[(k+3)*n : (k+4)*n]
			var a0, a1, a2, a3 float64
			for b, v := range row {
				x := float64(v)
				a0 += b0[b] * x
				a1 += b1[b] * x
				a2 += b2[b] * x
				a3 += b3[b] * x
			}
			dst[k], dst[k+1], dst[k+2], dst[k+3] = float32(a0), float32(a1), float32(a2), float32(a3)
		}
		for ; k < order; k++ {
			var acc float64
			bk := c.basis[k*n : (k+1)*n]
			for b, v := range row {
				acc += bk[b] * float64(v)
			}
			dst[k] = float32(acc)
		}
	}
	return out
}

// WarpMel stretches the mel axis of s by alpha (linear interpolation, the
// top band repeated past the edge): alpha > 1 moves formants up, as a
// shorter vocal tract does. Training on warped copies (vocal-tract-length
// perturbation) teaches the encoder to ignore who is speaking.
func WarpMel(s audio.Spectrogram, alpha float64) audio.Spectrogram {
	out := audio.Spectrogram{Frames: s.Frames, Bins: s.Bins, Data: make([]float32, len(s.Data))}
	if alpha <= 0 || s.Bins == 0 {
		copy(out.Data, s.Data)
		return out
	}
	for t := range s.Frames {
		src, dst := s.Row(t), out.Row(t)
		for b := range dst {
			x := math.Min(float64(s.Bins-1), float64(b)/alpha)
			lo := int(x)
			hi := min(lo+1, s.Bins-1)
			f := float32(x - float64(lo))
			dst[b] = src[lo]*(1-f) + src[hi]*f
		}
	}
	return out
}
