package units

import (
	"context"
	"fmt"

	"babelfish.dev/babelfish/audio"
)

// Sequence is speech as discrete units: Units[i] lasted Durations[i] unit
// frames. Consecutive units differ.
type Sequence struct {
	Units     []int `json:"units"`
	Durations []int `json:"durations"`
}

// Frames is the sequence's length in unit frames.
func (s Sequence) Frames() int {
	n := 0
	for _, d := range s.Durations {
		n += d
	}
	return n
}

// Dedup collapses runs of equal units, keeping each run's length.
func Dedup(assign []int) Sequence {
	var s Sequence
	for _, u := range assign {
		if n := len(s.Units); n > 0 && s.Units[n-1] == u {
			s.Durations[n-1]++
			continue
		}
		s.Units = append(s.Units, u)
		s.Durations = append(s.Durations, 1)
	}
	return s
}

// PoolFrames averages each run of stride consecutive frames (the last run
// may be shorter) into one unit frame.
func PoolFrames(s audio.Spectrogram, stride int) audio.Spectrogram {
	if stride <= 1 {
		return s
	}
	n := (s.Frames + stride - 1) / stride
	out := audio.Spectrogram{Frames: n, Bins: s.Bins, Data: make([]float32, n*s.Bins)}
	for i := range n {
		lo, hi := i*stride, min(s.Frames, (i+1)*stride)
		dst := out.Row(i)
		for t := lo; t < hi; t++ {
			for b, v := range s.Row(t) {
				dst[b] += v
			}
		}
		for b := range dst {
			dst[b] /= float32(hi - lo)
		}
	}
	return out
}

// Encode turns log-mel frames into a unit sequence: frames pooled by
// stride, each assigned its nearest centroid, repeats collapsed.
func (c *Codebook) Encode(logMel audio.Spectrogram, stride int) (Sequence, error) {
	if logMel.Bins != c.Dim {
		return Sequence{}, fmt.Errorf("units: spectrogram has %d bins, codebook dim is %d", logMel.Bins, c.Dim)
	}
	return Dedup(c.Assign(PoolFrames(logMel, stride).Data)), nil
}

// Vocoder renders unit sequences as speech.
type Vocoder struct {
	Codebook *Codebook
	// Stride is how many analysis frames one unit frame spans.
	Stride int
	// Smooth is the half-width, in analysis frames, of the moving average
	// applied to the rendered log-mel frames, so unit boundaries do not
	// click. 0 renders the centroids as they are.
	Smooth int
	// Analyzer inverts log-mel frames; its NMels must equal the codebook dim.
	Analyzer *audio.MelAnalyzer
	// GriffinLim tunes the inversion.
	GriffinLim audio.GriffinLimConfig
	// Loops, when set, renders from per-unit loops (see NewLoops) instead
	// of running Griffin-Lim per sequence; Smooth then sets the
	// cross-fade, Smooth hops (at least one, at most a unit frame): one
	// hop measured closer to the smoothed frames than two.
	Loops *Loops
	// Crossfade overrides the loops' cross-fade length in samples.
	Crossfade int
	// Refine, with Loops, runs this many Griffin-Lim iterations (with
	// GriffinLim's other settings) started from the loops' rendering, which
	// mends the cross-fades; 0 keeps the rendering as it is.
	Refine int
}

// check validates seq against the codebook and returns its length in
// analysis frames.
func (v *Vocoder) check(seq Sequence) (int, error) {
	cb := v.Codebook
	stride := max(1, v.Stride)
	if len(seq.Units) != len(seq.Durations) {
		return 0, fmt.Errorf("units: sequence has %d units and %d durations", len(seq.Units), len(seq.Durations))
	}
	n := 0
	for i, u := range seq.Units {
		if u < 0 || u >= cb.K {
			return 0, fmt.Errorf("units: unit %d at %d is outside the codebook's 0..%d", u, i, cb.K-1)
		}
		if seq.Durations[i] < 1 {
			return 0, fmt.Errorf("units: duration %d at %d: want >= 1", seq.Durations[i], i)
		}
		n += seq.Durations[i] * stride
	}
	return n, nil
}

// LogMel renders seq as log-mel frames: each unit's centroid repeated for
// its duration (times Stride), then smoothed.
func (v *Vocoder) LogMel(seq Sequence) (audio.Spectrogram, error) {
	cb := v.Codebook
	stride := max(1, v.Stride)
	n, err := v.check(seq)
	if err != nil {
		return audio.Spectrogram{}, err
	}
	raw := make([]float32, 0, n*cb.Dim)
	for i, u := range seq.Units {
		for range seq.Durations[i] * stride {
			raw = append(raw, cb.Centroid(u)...)
		}
	}
	out := audio.Spectrogram{Frames: n, Bins: cb.Dim, Data: raw}
	if v.Smooth <= 0 || n == 0 {
		return out, nil
	}
	sm := audio.Spectrogram{Frames: n, Bins: cb.Dim, Data: make([]float32, len(raw))}
	for t := range n {
		lo, hi := max(0, t-v.Smooth), min(n-1, t+v.Smooth)
		dst := sm.Row(t)
		for s := lo; s <= hi; s++ {
			for b, x := range out.Row(s) {
				dst[b] += x
			}
		}
		for b := range dst {
			dst[b] /= float32(hi - lo + 1)
		}
	}
	return sm, nil
}

// Synthesize renders seq as a waveform at the analyzer's rate.
func (v *Vocoder) Synthesize(ctx context.Context, seq Sequence) (audio.Clip, error) {
	if v.Analyzer == nil {
		return audio.Clip{}, fmt.Errorf("units: vocoder has no analyzer")
	}
	mc := v.Analyzer.Config()
	if mc.NMels != v.Codebook.Dim {
		return audio.Clip{}, fmt.Errorf("units: analyzer has %d mel bands, codebook dim is %d", mc.NMels, v.Codebook.Dim)
	}
	if v.Loops != nil {
		n, err := v.check(seq)
		switch {
		case err != nil:
			return audio.Clip{}, err
		case v.Loops.K() != v.Codebook.K || v.Loops.hop != mc.Hop || v.Loops.rate != mc.SampleRate:
			return audio.Clip{}, fmt.Errorf("units: loops cover %d units at %d Hz, hop %d: the vocoder has %d units at %d Hz, hop %d", v.Loops.K(), v.Loops.rate, v.Loops.hop, v.Codebook.K, mc.SampleRate, mc.Hop)
		case n == 0:
			return audio.Clip{Rate: mc.SampleRate}, nil
		}
		stride := max(1, v.Stride)
		xfade := v.Crossfade
		if xfade <= 0 {
			xfade = min(max(v.Smooth, 1)*mc.Hop, stride*mc.Hop)
		}
		x := v.Loops.render(seq, stride, xfade)
		if v.Refine > 0 {
			lm, err := v.LogMel(seq)
			if err != nil {
				return audio.Clip{}, err
			}
			gl := v.GriffinLim
			gl.Iterations, gl.Init, gl.Length = v.Refine, x, len(x)
			if x, err = v.Analyzer.Invert(ctx, lm, gl); err != nil {
				return audio.Clip{}, err
			}
		}
		return audio.Clip{Rate: mc.SampleRate, Samples: x}, nil
	}
	lm, err := v.LogMel(seq)
	if err != nil {
		return audio.Clip{}, err
	}
	if lm.Frames == 0 {
		return audio.Clip{Rate: mc.SampleRate}, nil
	}
	x, err := v.Analyzer.Invert(ctx, lm, v.GriffinLim)
	if err != nil {
		return audio.Clip{}, err
	}
	return audio.Clip{Rate: mc.SampleRate, Samples: x}, nil
}
