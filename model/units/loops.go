package units

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"golang.org/x/sync/errgroup"

	"babelfish.dev/babelfish/audio"
)

// Loops holds, for each unit of a codebook, a seamless loop of waveform
// whose every STFT frame has the unit centroid's magnitude. Rendering a
// sequence is then reading the loops out and cross-fading at unit
// boundaries: no per-request phase search. The phase search (Griffin-Lim on
// a circular signal) runs once per codebook, in NewLoops.
type Loops struct {
	rate, hop int
	wave      [][]float32
}

// LoopsConfig tunes NewLoops. A zero field takes its default.
type LoopsConfig struct {
	// Period is each loop's length in analysis frames (hops). Default 8
	// (80 ms at the default 10 ms hop): measured as close to the units'
	// frames as 16, for half the rendering.
	Period int
	// GriffinLim tunes the phase search; its Iterations default to 64 here
	// and each unit's Seed is GriffinLim.Seed plus the unit's index.
	GriffinLim audio.GriffinLimConfig
}

// NewLoops renders every centroid of cb held still, as a loop, through a's
// inverse filterbank and circular Griffin-Lim. Units render in parallel,
// one per CPU; ctx stops the work.
func NewLoops(ctx context.Context, cb *Codebook, a *audio.MelAnalyzer, cfg LoopsConfig) (*Loops, error) {
	mc := a.Config()
	if mc.NMels != cb.Dim {
		return nil, fmt.Errorf("units: analyzer has %d mel bands, codebook dim is %d", mc.NMels, cb.Dim)
	}
	if cfg.Period == 0 {
		cfg.Period = 8
	}
	if cfg.GriffinLim.Iterations == 0 {
		cfg.GriffinLim.Iterations = 64
	}
	period := cfg.Period * mc.Hop
	if cfg.Period < 1 || cfg.Period > 4096 || period < mc.NFFT {
		return nil, fmt.Errorf("units: LoopsConfig.Period is %d frames: want 1..4096 frames and at least NFFT (%d samples, %d frames)", cfg.Period, mc.NFFT, (mc.NFFT+mc.Hop-1)/mc.Hop)
	}
	l := &Loops{rate: mc.SampleRate, hop: mc.Hop, wave: make([][]float32, cb.K)}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for u := range cb.K {
		g.Go(func() error {
			mag, err := a.MelToMagnitude(audio.Spectrogram{Frames: 1, Bins: cb.Dim, Data: cb.Centroid(u)}, 100)
			if err != nil {
				return err
			}
			gl := cfg.GriffinLim
			gl.Seed += uint64(u)
			w, err := a.LoopGriffinLim(gctx, mag.Data, period, gl)
			if err != nil {
				return fmt.Errorf("units: loop of unit %d: %w", u, err)
			}
			l.wave[u] = w
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return l, nil
}

// K is how many units the loops cover.
func (l *Loops) K() int { return len(l.wave) }

// render writes seq as a waveform: unit i fills its span (its frames times
// stride hops, spans centred like the analyzer's frames) from its loop,
// and neighbouring units cross-fade with equal power over xfade samples
// around their boundary. The length matches Griffin-Lim's for the same
// frames: (frames-1) hops.
func (l *Loops) render(seq Sequence, stride, xfade int) []float32 {
	n := seq.Frames() * stride
	length := max((n-1)*l.hop, 1)
	out := make([]float32, length)
	// bounds[i] is where unit i starts; bounds[len] is the end.
	bounds := make([]int, len(seq.Units)+1)
	f := 0
	for i, d := range seq.Durations {
		bounds[i] = min(length, max(0, f*l.hop-l.hop/2))
		f += d * stride
	}
	bounds[0], bounds[len(seq.Units)] = 0, length
	half := xfade / 2
	// The crossfade gains by offset into the fade, computed once a call
	// (the same expressions, so the same values, as per sample).
	// An offset is below xfade and below length+half (t < length).
	nf := min(xfade, length+half)
	fadeIn, fadeOut := make([]float64, nf), make([]float64, nf)
	for j := range nf {
		fadeIn[j] = math.Sin(math.Pi / 2 * (float64(j) + 0.5) / float64(xfade))
		fadeOut[j] = math.Cos(math.Pi / 2 * (float64(j) + 0.5) / float64(xfade))
	}
	for i, u := range seq.Units {
		w := l.wave[u]
		lo, hi := bounds[i], bounds[i+1]
		if i > 0 {
			lo -= half
		}
		if i < len(seq.Units)-1 {
			hi += xfade - half
		}
		lo, hi = max(0, lo), min(length, hi)
		for t := lo; t < hi; t++ {
			g := 1.0
			if i > 0 && t < bounds[i]+xfade-half {
				g *= fadeIn[t-(bounds[i]-half)]
			}
			if i < len(seq.Units)-1 && t >= bounds[i+1]-half {
				g *= fadeOut[t-(bounds[i+1]-half)]
			}
			out[t] += float32(g) * w[t%len(w)]
		}
	}
	return out
}
