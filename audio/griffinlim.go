package audio

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// GriffinLimConfig tunes spectrogram inversion. A zero field takes its
// default.
type GriffinLimConfig struct {
	// Iterations of (fast) Griffin-Lim. Default 60.
	Iterations int
	// Momentum is the fast Griffin-Lim extrapolation weight (Perraudin et
	// al., 2013). Default 0.99; a negative value runs plain Griffin-Lim.
	Momentum float64
	// NNLSIterations refine the pseudo-inverse estimate of the linear
	// spectrum from the mel spectrum towards the non-negative least-squares
	// solution. Default 100; a negative value keeps the clipped
	// pseudo-inverse.
	NNLSIterations int
	// Seed picks the random initial phase; the same seed gives the same
	// waveform.
	Seed uint64
	// Length is the output length in samples; it must give the
	// spectrogram's frame count (1+Length/Hop). Default (frames-1)*Hop
	// (1 for a single frame).
	Length int
	// Init, when set, starts the search from this waveform's STFT phase
	// instead of a random one (a warm start: a few iterations then refine
	// it). It must be Length samples long (the default Length when zero).
	Init []float32
}

func (c GriffinLimConfig) withDefaults() (GriffinLimConfig, error) {
	if c.Iterations == 0 {
		c.Iterations = 60
	}
	if c.Momentum == 0 {
		c.Momentum = 0.99
	}
	if c.NNLSIterations == 0 {
		c.NNLSIterations = 100
	}
	switch {
	case c.Iterations < 0 || c.Iterations > 10000:
		return c, fmt.Errorf("audio: GriffinLimConfig.Iterations is %d: want 0..10000", c.Iterations)
	case c.Momentum >= 1.5 || math.IsNaN(c.Momentum):
		return c, fmt.Errorf("audio: GriffinLimConfig.Momentum is %g: want < 1.5 (fast Griffin-Lim diverges beyond)", c.Momentum)
	case c.NNLSIterations > 100000:
		return c, fmt.Errorf("audio: GriffinLimConfig.NNLSIterations is %d: want <= 100000", c.NNLSIterations)
	case c.Length < 0:
		return c, fmt.Errorf("audio: GriffinLimConfig.Length is %d: want >= 0", c.Length)
	}
	c.Momentum = max(c.Momentum, 0)
	c.NNLSIterations = max(c.NNLSIterations, 0)
	return c, nil
}

// Invert turns a log-mel spectrogram (as LogMel makes it) back into a
// waveform: MelToMagnitude, then GriffinLim.
func (a *MelAnalyzer) Invert(ctx context.Context, logMel Spectrogram, cfg GriffinLimConfig) ([]float32, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	mag, err := a.MelToMagnitude(logMel, cfg.NNLSIterations)
	if err != nil {
		return nil, err
	}
	return a.griffinLim(ctx, mag, cfg)
}

// filterbankPinv is the Moore-Penrose pseudo-inverse of the NMels x bins
// filterbank, computed once per analyzer.
func (a *MelAnalyzer) filterbankPinv() (*mat.Dense, error) {
	a.pinvOnce.Do(func() {
		b := mat.NewDense(a.cfg.NMels, a.bins, nil)
		for m, f := range a.fb {
			for i, w := range f.w {
				b.Set(m, f.start+i, w)
			}
		}
		var svd mat.SVD
		if !svd.Factorize(b, mat.SVDThin) {
			a.pinvErr = fmt.Errorf("audio: SVD of the %d x %d mel filterbank did not converge", a.cfg.NMels, a.bins)
			return
		}
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		sv := svd.Values(nil)
		// Singular values this far below the largest come from (nearly)
		// empty bands; inverting them would only amplify noise.
		cut := sv[0] * 1e-6
		for i, s := range sv {
			if s > cut {
				sv[i] = 1 / s
			} else {
				sv[i] = 0
			}
		}
		// pinv = V diag(1/s) U^T
		v.Apply(func(_, j int, x float64) float64 { return x * sv[j] }, &v)
		var p mat.Dense
		p.Mul(&v, u.T())
		a.pinv = &p
	})
	return a.pinv, a.pinvErr
}

// MelToMagnitude estimates the linear STFT magnitude, frames x (NFFT/2+1),
// whose filterbank output best matches exp(logMel): the pseudo-inverse
// solution clipped at zero, refined by nnlsIters multiplicative updates
// towards the non-negative least-squares solution.
func (a *MelAnalyzer) MelToMagnitude(logMel Spectrogram, nnlsIters int) (Spectrogram, error) {
	return a.melToMagnitude(logMel, nnlsIters, nnlsRun)
}

// melToMagnitude is MelToMagnitude with the refinement run by refine,
// which solves nnlsLanes frames at a time.
func (a *MelAnalyzer) melToMagnitude(logMel Spectrogram, nnlsIters int, refine func(*nnlsScratch, melCSR, int)) (Spectrogram, error) {
	if err := logMel.check(); err != nil {
		return Spectrogram{}, err
	}
	if logMel.Bins != a.cfg.NMels {
		return Spectrogram{}, fmt.Errorf("audio: log-mel spectrogram has %d bins, the analyzer %d mels (NMels)", logMel.Bins, a.cfg.NMels)
	}
	pinv, err := a.filterbankPinv()
	if err != nil {
		return Spectrogram{}, err
	}
	nm, nb := a.cfg.NMels, a.bins
	out := Spectrogram{Frames: logMel.Frames, Bins: nb, Data: make([]float32, logMel.Frames*nb)}
	mel := make([]float64, nm)
	s := make([]float64, nb)
	num := make([]float64, nb) // B^T mel
	melVec := mat.NewVecDense(nm, mel)
	sVec := mat.NewVecDense(nb, s)
	sc := newNNLSScratch(nb, nm)
	var lanes [nnlsLanes]int // the frame each lane refines
	used := 0
	flush := func() {
		// Unused lanes repeat lane 0: computed, then dropped.
		for l := used; l < nnlsLanes; l++ {
			for k := range nb {
				sc.s[k*nnlsLanes+l], sc.num[k*nnlsLanes+l] = sc.s[k*nnlsLanes], sc.num[k*nnlsLanes]
			}
		}
		refine(sc, a.csr, nnlsIters)
		for l, t := range lanes[:used] {
			for k := range s {
				s[k] = sc.s[k*nnlsLanes+l]
			}
			a.magnitudeRow(out.Row(t), s)
		}
		used = 0
	}
	repeats := false
	for t := range logMel.Frames {
		// A unit vocoder repeats each unit's frame for its duration: an
		// exact repeat has the same solution, copied once all are solved.
		if t > 0 && slices.Equal(logMel.Row(t), logMel.Row(t-1)) {
			repeats = true
			continue
		}
		for m, v := range logMel.Row(t) {
			mel[m] = float64(v)
		}
		Exps(mel)
		sVec.MulVec(pinv, melVec)
		peak := 0.0
		for k, v := range s {
			s[k] = max(v, 0)
			peak = max(peak, s[k])
		}
		if nnlsIters <= 0 || !(peak > 0) {
			a.magnitudeRow(out.Row(t), s)
			continue
		}
		// Multiplicative updates keep s >= 0 but cannot move a zero:
		// start every bin slightly positive.
		a.melT(num, mel)
		for k, v := range s {
			sc.s[k*nnlsLanes+used] = max(v, peak*1e-6)
			sc.num[k*nnlsLanes+used] = num[k]
		}
		lanes[used] = t
		if used++; used == nnlsLanes {
			flush()
		}
	}
	if used > 0 {
		flush()
	}
	if repeats {
		for t := 1; t < logMel.Frames; t++ {
			if slices.Equal(logMel.Row(t), logMel.Row(t-1)) {
				copy(out.Row(t), out.Row(t-1))
			}
		}
	}
	return out, nil
}

// magnitudeRow writes a solved spectrum s (power when Power is 2) as
// magnitudes.
func (a *MelAnalyzer) magnitudeRow(row []float32, s []float64) {
	for k, v := range s {
		if a.cfg.Power == 2 {
			v = math.Sqrt(v)
		}
		row[k] = float32(v)
	}
}

// melApply sets dst (NMels) to B s.
func (a *MelAnalyzer) melApply(dst, s []float64) {
	for m, f := range a.fb {
		var e float64
		for i, w := range f.w {
			e += float64(w * s[f.start+i])
		}
		dst[m] = e
	}
}

// melT sets dst (bins) to B^T v.
func (a *MelAnalyzer) melT(dst, v []float64) {
	clear(dst)
	for m, f := range a.fb {
		for i, w := range f.w {
			dst[f.start+i] += float64(w * v[m])
		}
	}
}

// GriffinLim finds a waveform whose STFT magnitude approaches mag (frames x
// NFFT/2+1, e.g. from Magnitude or MelToMagnitude) by alternating
// projections, with fast Griffin-Lim momentum unless cfg.Momentum < 0. It
// starts from a seeded random phase, so it is deterministic. ctx is checked
// between iterations.
func (a *MelAnalyzer) GriffinLim(ctx context.Context, mag Spectrogram, cfg GriffinLimConfig) ([]float32, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return a.griffinLim(ctx, mag, cfg)
}

// griffinLim is GriffinLim with cfg's defaults already applied.
func (a *MelAnalyzer) griffinLim(ctx context.Context, mag Spectrogram, cfg GriffinLimConfig) ([]float32, error) {
	if err := mag.check(); err != nil {
		return nil, err
	}
	if mag.Bins != a.bins {
		return nil, fmt.Errorf("audio: magnitude spectrogram has %d bins, want NFFT/2+1 = %d", mag.Bins, a.bins)
	}
	frames := mag.Frames
	if frames == 0 {
		return []float32{}, nil
	}
	length := cfg.Length
	if length == 0 {
		length = max((frames-1)*a.cfg.Hop, 1)
	}
	if a.numFrames(length) != frames {
		return nil, fmt.Errorf("audio: GriffinLimConfig.Length %d gives %d frames at hop %d, the spectrogram has %d", length, a.numFrames(length), a.cfg.Hop, frames)
	}

	// The buffers (several hundred kilobytes a second of speech) come
	// from a pool: a server renders many outputs a second, and fresh ones
	// would be cleared and collected for each.
	w, _ := a.glWork.Get().(*glWork)
	if w == nil {
		w = &glWork{stftWork: a.newSTFTWork()}
	}
	defer a.glWork.Put(w)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	n := len(mag.Data)
	w.c = slices.Grow(w.c[:0], n)[:n]         // current estimate
	w.tPrev = slices.Grow(w.tPrev[:0], n)[:n] // previous projection
	c, tPrev := w.c, w.tPrev
	switch {
	case cfg.Init != nil:
		if len(cfg.Init) != length {
			return nil, fmt.Errorf("audio: GriffinLimConfig.Init has %d samples, want the output length %d", len(cfg.Init), length)
		}
		w.z = a.stft(toFloat64(cfg.Init), &w.stftWork, w.z)
		for i, zi := range w.z {
			m := float64(mag.Data[i])
			if r := math.Hypot(real(zi), imag(zi)); r > 1e-12 {
				c[i] = zi * complex(m/r, 0)
			} else {
				c[i] = complex(m, 0)
			}
		}
	default:
		// The random phases in the generator's order, then their sines
		// and cosines several at a time.
		w.ph = slices.Grow(w.ph[:0], 3*n)[:3*n]
		ph, sn, cs := w.ph[:n], w.ph[n:2*n], w.ph[2*n:]
		for i := range ph {
			ph[i] = 2 * math.Pi * rng.Float64()
		}
		sincoses(sn, cs, ph)
		for i, m := range mag.Data {
			c[i] = complex(float64(m)*cs[i], float64(m)*sn[i])
		}
	}
	copy(tPrev, c)
	w.norm = a.olaNorm(w.norm, frames, length)
	for it := range cfg.Iterations {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("audio: Griffin-Lim stopped at iteration %d of %d: %w", it, cfg.Iterations, err)
		}
		// Project onto consistent spectrograms (STFT of a signal), then
		// onto the target magnitude; extrapolate along the step.
		w.x = a.istft(c, frames, w.norm, &w.stftWork, w.x)
		w.z = a.stft(w.x, &w.stftWork, w.z)
		glProject(c, tPrev, w.z, mag.Data, cfg.Momentum)
	}
	w.x = a.istft(tPrev, frames, w.norm, &w.stftWork, w.x)
	x := w.x
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out, nil
}

// glWork holds one Griffin-Lim run's buffers, each grown as needed.
type glWork struct {
	stftWork
	c, tPrev, z []complex128
	x, norm     []float64
	ph          []float64 // initial phases, their sines and cosines
}

// LoopGriffinLim finds a periodic waveform, period samples long, whose
// circular STFT has the magnitude mag (NFFT/2+1 values) in every frame: a
// sound held still that can be read out for any length by wrapping around,
// with no seam. period must be a multiple of Hop and at least NFFT. It is
// Griffin-Lim (with cfg's iterations, momentum and seed) on frames that wrap
// around the period.
func (a *MelAnalyzer) LoopGriffinLim(ctx context.Context, mag []float32, period int, cfg GriffinLimConfig) ([]float32, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	hop, n := a.cfg.Hop, a.cfg.NFFT
	if len(mag) != a.bins {
		return nil, fmt.Errorf("audio: loop magnitude has %d bins, want NFFT/2+1 = %d", len(mag), a.bins)
	}
	if period < n || period%hop != 0 {
		return nil, fmt.Errorf("audio: loop period is %d samples: want a multiple of the hop (%d) and at least NFFT (%d)", period, hop, n)
	}
	frames := period / hop
	half := n / 2
	// Every sample is covered by the same windows' wrap-around, so the
	// least-squares normalization is per sample of the period.
	norm := make([]float64, period)
	for t := range frames {
		for i, w := range a.window {
			norm[((t*hop-half+i)%period+period)%period] += w * w
		}
	}
	for j, v := range norm {
		if v > 1e-8 {
			norm[j] = 1 / v
		}
	}
	fft := a.fft.plan(n)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	c := make([]complex128, frames*a.bins)
	tPrev := make([]complex128, len(c))
	for t := range frames {
		for k, m := range mag {
			sin, cos := math.Sincos(2 * math.Pi * rng.Float64())
			c[t*a.bins+k] = complex(float64(m)*cos, float64(m)*sin)
		}
	}
	copy(tPrev, c)
	x := make([]float64, period)
	frame := make([]float64, n)
	istft := func(spec []complex128) {
		clear(x)
		for t := range frames {
			fft.Sequence(frame, spec[t*a.bins:(t+1)*a.bins])
			for i, w := range a.window {
				j := ((t*hop-half+i)%period + period) % period
				x[j] += frame[i] * w / float64(n)
			}
		}
		for j, v := range norm {
			x[j] *= v
		}
	}
	for it := range cfg.Iterations {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("audio: loop Griffin-Lim stopped at iteration %d of %d: %w", it, cfg.Iterations, err)
		}
		istft(c)
		for t := range frames {
			for i, w := range a.window {
				frame[i] = x[((t*hop-half+i)%period+period)%period] * w
			}
			z := c[t*a.bins : (t+1)*a.bins]
			fft.Coefficients(z, frame)
			for k, zi := range z {
				m := float64(mag[k])
				var v complex128
				if r := math.Hypot(real(zi), imag(zi)); r > 1e-12 {
					v = zi * complex(m/r, 0)
				} else {
					v = complex(m, 0)
				}
				i := t*a.bins + k
				c[i] = v + complex(cfg.Momentum, 0)*(v-tPrev[i])
				tPrev[i] = v
			}
		}
	}
	istft(tPrev)
	out := make([]float32, period)
	for i, v := range x {
		out[i] = float32(v)
	}
	return out, nil
}
