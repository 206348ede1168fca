package audio

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// MelConfig describes a log-mel front end. A zero field takes its value
// from DefaultMelConfig.
type MelConfig struct {
	// SampleRate of the audio in Hz.
	SampleRate int
	// NFFT is the FFT size; a frame gives NFFT/2+1 linear bins.
	NFFT int
	// Hop is the step between frames in samples.
	Hop int
	// Win is the Hann window length in samples, <= NFFT; the window is
	// centred in the FFT frame.
	Win int
	// NMels is the number of mel bands.
	NMels int
	// FMin and FMax bound the mel filterbank in Hz; FMax 0 means
	// SampleRate/2.
	FMin, FMax float64
	// Power is the exponent of the STFT magnitude before the filterbank:
	// 2 (power, the default) or 1 (magnitude).
	Power float64
	// LogFloor is the smallest value taken the log of, so silence gives a
	// finite ln(LogFloor) instead of -Inf. Default 1e-10.
	LogFloor float64
}

// DefaultMelConfig is a common front end for 16 kHz speech: 32 ms FFT, 25 ms
// window, 10 ms hop, 80 Slaney mel bands over 0..8 kHz, natural log of power.
func DefaultMelConfig() MelConfig {
	return MelConfig{SampleRate: 16000, NFFT: 512, Hop: 160, Win: 400, NMels: 80, FMin: 0, FMax: 8000, Power: 2, LogFloor: 1e-10}
}

func (c MelConfig) withDefaults() (MelConfig, error) {
	d := DefaultMelConfig()
	if c.SampleRate == 0 {
		c.SampleRate = d.SampleRate
	}
	if c.NFFT == 0 {
		c.NFFT = d.NFFT
	}
	if c.Hop == 0 {
		c.Hop = d.Hop
	}
	if c.Win == 0 {
		c.Win = min(d.Win, c.NFFT)
	}
	if c.NMels == 0 {
		c.NMels = d.NMels
	}
	if c.FMax == 0 {
		c.FMax = float64(c.SampleRate) / 2
	}
	if c.Power == 0 {
		c.Power = d.Power
	}
	if c.LogFloor == 0 {
		c.LogFloor = d.LogFloor
	}
	nyq := float64(c.SampleRate) / 2
	switch {
	case c.SampleRate < 0:
		return c, fmt.Errorf("audio: MelConfig.SampleRate is %d Hz: want > 0", c.SampleRate)
	case c.NFFT < 2 || c.NFFT > 1<<16:
		return c, fmt.Errorf("audio: MelConfig.NFFT is %d: want 2..65536", c.NFFT)
	case c.Hop < 1 || c.Hop > c.NFFT:
		return c, fmt.Errorf("audio: MelConfig.Hop is %d: want 1..NFFT (%d)", c.Hop, c.NFFT)
	case c.Win < 1 || c.Win > c.NFFT:
		return c, fmt.Errorf("audio: MelConfig.Win is %d: want 1..NFFT (%d)", c.Win, c.NFFT)
	case c.NMels < 1 || c.NMels > c.NFFT/2+1:
		return c, fmt.Errorf("audio: MelConfig.NMels is %d: want 1..NFFT/2+1 (%d)", c.NMels, c.NFFT/2+1)
	case !(c.FMin >= 0 && c.FMin < c.FMax):
		return c, fmt.Errorf("audio: MelConfig.FMin is %g Hz: want 0 <= FMin < FMax (%g Hz)", c.FMin, c.FMax)
	case c.FMax > nyq:
		return c, fmt.Errorf("audio: MelConfig.FMax is %g Hz: want <= SampleRate/2 (%g Hz)", c.FMax, nyq)
	case c.Power != 1 && c.Power != 2:
		return c, fmt.Errorf("audio: MelConfig.Power is %g: want 1 or 2", c.Power)
	case !(c.LogFloor > 0):
		return c, fmt.Errorf("audio: MelConfig.LogFloor is %g: want > 0", c.LogFloor)
	}
	return c, nil
}

// Spectrogram is a frames x bins matrix in row-major order: Data[t*Bins+b]
// is bin b of frame t. For log-mel features Bins is NMels, so each frame is
// one contiguous encoder input vector.
type Spectrogram struct {
	Frames, Bins int
	Data         []float32
}

// Row returns frame t (a view into Data).
func (s Spectrogram) Row(t int) []float32 { return s.Data[t*s.Bins : (t+1)*s.Bins] }

func (s Spectrogram) check() error {
	if s.Frames < 0 || s.Bins < 0 || len(s.Data) != s.Frames*s.Bins {
		return fmt.Errorf("audio: spectrogram is %d x %d but holds %d values", s.Frames, s.Bins, len(s.Data))
	}
	return nil
}

// melFilter is one triangular band: weights for linear bins start,
// start+1, ...
type melFilter struct {
	start int
	w     []float64
}

// MelAnalyzer computes STFTs and log-mel spectrograms for one MelConfig and
// inverts them with Griffin-Lim. Build it once and share it: it is safe for
// concurrent use.
type MelAnalyzer struct {
	cfg    MelConfig
	bins   int       // NFFT/2+1
	window []float64 // Hann(Win) centred in NFFT samples
	fb     []melFilter
	csr    melCSR     // fb in compressed rows
	fft    *fftTables // nil when NFFT is not a power of two

	glWork sync.Pool // *glWork: Griffin-Lim's buffers, reused across calls

	pinvOnce sync.Once
	pinv     *mat.Dense // bins x NMels pseudo-inverse of the filterbank
	pinvErr  error
}

// NewMelAnalyzer validates cfg (zero fields take defaults) and builds the
// window and filterbank.
func NewMelAnalyzer(cfg MelConfig) (*MelAnalyzer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &MelAnalyzer{cfg: cfg, bins: cfg.NFFT/2 + 1, fft: newFFTTables(cfg.NFFT)}
	// Periodic Hann: the overlap-added squared windows are flat, which the
	// inverse STFT relies on.
	a.window = make([]float64, cfg.NFFT)
	off := (cfg.NFFT - cfg.Win) / 2
	for i := range cfg.Win {
		a.window[off+i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(cfg.Win))
	}
	a.fb = slaneyFilterbank(cfg)
	a.csr = newMelCSR(a.fb)
	return a, nil
}

// Config is the analyzer's configuration with defaults filled in.
func (a *MelAnalyzer) Config() MelConfig { return a.cfg }

// hzToMel is the Slaney (Auditory Toolbox) scale: linear below 1 kHz,
// logarithmic above.
func hzToMel(f float64) float64 {
	const fsp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 1000.0 / (200.0 / 3)
	logStep := math.Log(6.4) / 27
	if f < minLogHz {
		return f / fsp
	}
	return minLogMel + math.Log(f/minLogHz)/logStep
}

func melToHz(m float64) float64 {
	const fsp, minLogHz, minLogMel = 200.0 / 3, 1000.0, 1000.0 / (200.0 / 3)
	logStep := math.Log(6.4) / 27
	if m < minLogMel {
		return m * fsp
	}
	return minLogHz * math.Exp(logStep*(m-minLogMel))
}

// slaneyFilterbank builds NMels triangles evenly spaced on the mel scale,
// each scaled to unit area (Slaney normalization) so that bands of different
// widths give comparable energies.
func slaneyFilterbank(c MelConfig) []melFilter {
	bins := c.NFFT/2 + 1
	lo, hi := hzToMel(c.FMin), hzToMel(c.FMax)
	edges := make([]float64, c.NMels+2)
	for i := range edges {
		edges[i] = melToHz(lo + (hi-lo)*float64(i)/float64(c.NMels+1))
	}
	binHz := float64(c.SampleRate) / float64(c.NFFT)
	fb := make([]melFilter, c.NMels)
	for m := range fb {
		f0, f1, f2 := edges[m], edges[m+1], edges[m+2]
		norm := 2 / (f2 - f0)
		var filt melFilter
		for k := range bins {
			f := float64(k) * binHz
			w := max(0, min((f-f0)/(f1-f0), (f2-f)/(f2-f1)))
			if w <= 0 {
				if filt.w != nil {
					break
				}
				continue
			}
			if filt.w == nil {
				filt.start = k
			}
			filt.w = append(filt.w, w*norm)
		}
		fb[m] = filt
	}
	return fb
}

// numFrames is how many centred frames cover n samples.
func (a *MelAnalyzer) numFrames(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + n/a.cfg.Hop
}

// stft is the centred short-time Fourier transform (input zero-padded by
// NFFT/2 on both sides), frames x bins, row-major.
func (a *MelAnalyzer) stft(x []float64, w *stftWork, out []complex128) []complex128 {
	n, hop, half := a.cfg.NFFT, a.cfg.Hop, a.cfg.NFFT/2
	frames := a.numFrames(len(x))
	out = slices.Grow(out[:0], frames*a.bins)[:frames*a.bins]
	fft, frame := w.fft, w.frame
	for t := range frames {
		start := t*hop - half
		lo, hi := max(0, -start), min(n, len(x)-start)
		clear(frame)
		if lo < hi {
			mulTo(frame[lo:hi], x[start+lo:start+hi], a.window[lo:hi])
		}
		fft.Coefficients(out[t*a.bins:(t+1)*a.bins], frame)
	}
	return out
}

// stftWork is the scratch of stft and istft: an FFT plan and a frame.
type stftWork struct {
	fft   realFFT
	frame []float64
}

func (a *MelAnalyzer) newSTFTWork() stftWork {
	return stftWork{fft: a.fft.plan(a.cfg.NFFT), frame: make([]float64, a.cfg.NFFT)}
}

// olaNorm sets norm (grown to length samples, and returned) to 1 / (sum
// of squared windows) at each output sample of a frames-long centred STFT
// (0 where no window reaches), the normalization of the least-squares
// inverse STFT.
func (a *MelAnalyzer) olaNorm(norm []float64, frames, length int) []float64 {
	hop, half := a.cfg.Hop, a.cfg.NFFT/2
	norm = slices.Grow(norm[:0], length)[:length]
	clear(norm)
	for t := range frames {
		start := t*hop - half
		for i, w := range a.window {
			if j := start + i; j >= 0 && j < length {
				norm[j] += float64(w * w)
			}
		}
	}
	for j, v := range norm {
		if v > 1e-8 {
			norm[j] = 1 / v
		} else {
			norm[j] = 0
		}
	}
	return norm
}

// istft inverts stft by weighted overlap-add (the least-squares inverse),
// returning len(norm) samples; norm comes from olaNorm.
func (a *MelAnalyzer) istft(spec []complex128, frames int, norm []float64, w *stftWork, out []float64) []float64 {
	n, hop, half := a.cfg.NFFT, a.cfg.Hop, a.cfg.NFFT/2
	length := len(norm)
	out = slices.Grow(out[:0], length)[:length]
	clear(out)
	fft, frame := w.fft, w.frame
	scale := 1 / float64(n) // gonum's inverse is unnormalized
	for t := range frames {
		fft.Sequence(frame, spec[t*a.bins:(t+1)*a.bins])
		start := t*hop - half
		lo, hi := max(0, -start), min(n, length-start)
		if lo < hi {
			overlapAdd(out[start+lo:start+hi], frame[lo:hi], a.window[lo:hi], scale)
		}
	}
	for j, v := range norm {
		out[j] *= v
	}
	return out
}

// Magnitude returns |STFT(x)|, frames x (NFFT/2+1).
func (a *MelAnalyzer) Magnitude(x []float32) Spectrogram {
	w := a.newSTFTWork()
	spec := a.stft(toFloat64(x), &w, nil)
	s := Spectrogram{Frames: len(spec) / a.bins, Bins: a.bins, Data: make([]float32, len(spec))}
	for i, c := range spec {
		s.Data[i] = float32(math.Hypot(real(c), imag(c)))
	}
	return s
}

// LogMel returns ln(max(mel, LogFloor)) of x, frames x NMels, where mel is
// the filterbank applied to |STFT|^Power. Frames are centred: frame t covers
// samples around t*Hop, and there are 1+len(x)/Hop of them (none for no
// samples).
func (a *MelAnalyzer) LogMel(x []float32) Spectrogram {
	// Frame by frame: window, FFT, power, filterbank and log go straight
	// into the output row, so the only allocation the size of the input is
	// the result (no complex spectrogram, no float64 copy of x). The
	// arithmetic is stft's, in the same order.
	n, hop, half := a.cfg.NFFT, a.cfg.Hop, a.cfg.NFFT/2
	frames := a.numFrames(len(x))
	s := Spectrogram{Frames: frames, Bins: a.cfg.NMels, Data: make([]float32, frames*a.cfg.NMels)}
	fft := a.fft.plan(n)
	frame := make([]float64, n)
	coef := make([]complex128, a.bins)
	pow := make([]float64, a.bins)
	mel := make([]float64, len(a.fb))
	for t := range frames {
		start := t*hop - half
		lo, hi := max(0, -start), min(n, len(x)-start)
		clear(frame[:lo])
		clear(frame[max(lo, hi):])
		if lo < hi {
			windowFrame(frame[lo:hi], x[start+lo:start+hi], a.window[lo:hi])
		}
		fft.Coefficients(coef, frame)
		for k, c := range coef {
			pow[k] = float64(real(c)*real(c)) + float64(imag(c)*imag(c))
		}
		if a.cfg.Power == 1 {
			for k, p := range pow {
				pow[k] = math.Sqrt(p)
			}
		}
		for m, f := range a.fb {
			var e float64
			for i, w := range f.w {
				e += float64(w * pow[f.start+i])
			}
			// max(e, LogFloor), NaN kept, without the builtin's sign-of-
			// zero work (LogFloor is positive).
			if e < a.cfg.LogFloor {
				e = a.cfg.LogFloor
			}
			mel[m] = e
		}
		logs(mel) // math.Log's values, several at a time
		row := s.Data[t*a.cfg.NMels : (t+1)*a.cfg.NMels]
		for m, v := range mel {
			row[m] = float32(v)
		}
	}
	return s
}

// LogMel is NewMelAnalyzer(cfg) followed by LogMel(x), for one-off use.
func LogMel(x []float32, cfg MelConfig) (Spectrogram, error) {
	a, err := NewMelAnalyzer(cfg)
	if err != nil {
		return Spectrogram{}, err
	}
	return a.LogMel(x), nil
}

func toFloat64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
