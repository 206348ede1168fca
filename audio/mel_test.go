package audio

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/dsp/fourier"
)

func TestMelConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  MelConfig
		msg  string // "" means valid
	}{
		{"zero value takes defaults", MelConfig{}, ""},
		{"22 kHz, 1024 FFT", MelConfig{SampleRate: 22050, NFFT: 1024, Hop: 256, Win: 1024, NMels: 80, FMax: 8000}, ""},
		{"negative rate", MelConfig{SampleRate: -1}, "MelConfig.SampleRate"},
		{"NFFT 1", MelConfig{NFFT: 1, Win: 1, Hop: 1, NMels: 1}, "MelConfig.NFFT is 1"},
		{"hop above NFFT", MelConfig{Hop: 1000}, "MelConfig.Hop is 1000"},
		{"window above NFFT", MelConfig{Win: 600}, "MelConfig.Win is 600"},
		{"too many mels", MelConfig{NMels: 300}, "MelConfig.NMels is 300"},
		{"FMin above FMax", MelConfig{FMin: 5000, FMax: 4000}, "MelConfig.FMin is 5000"},
		{"FMax above Nyquist", MelConfig{FMax: 9000}, "MelConfig.FMax is 9000"},
		{"power 3", MelConfig{Power: 3}, "MelConfig.Power is 3"},
		{"negative floor", MelConfig{LogFloor: -1}, "MelConfig.LogFloor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewMelAnalyzer(tc.cfg)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("NewMelAnalyzer: %v", err)
				}
				if c := a.Config(); c.NFFT == 0 || c.NMels == 0 || c.FMax == 0 {
					t.Errorf("defaults not filled: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func TestSlaneyMelScale(t *testing.T) {
	// Linear below 1 kHz (15 mels there), 27 steps per factor 6.4 above.
	for _, tc := range []struct{ hz, mel float64 }{{0, 0}, {200.0 / 3, 1}, {500, 7.5}, {1000, 15}, {6400, 42}} {
		if got := hzToMel(tc.hz); math.Abs(got-tc.mel) > 1e-9 {
			t.Errorf("hzToMel(%g) = %g, want %g", tc.hz, got, tc.mel)
		}
		if got := melToHz(tc.mel); math.Abs(got-tc.hz) > 1e-6 {
			t.Errorf("melToHz(%g) = %g, want %g", tc.mel, got, tc.hz)
		}
	}
}

func TestFilterbankShape(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	binHz := 16000.0 / 512
	prevCentre := -1.0
	for m, f := range a.fb {
		if len(f.w) == 0 {
			t.Fatalf("mel band %d is empty", m)
		}
		var area, centre, peak float64
		for i, w := range f.w {
			area += w * binHz
			if w > peak {
				peak, centre = w, float64(f.start+i)*binHz
			}
		}
		if centre < prevCentre {
			t.Errorf("band %d peaks at %g Hz, below band %d", m, centre, m-1)
		}
		prevCentre = centre
		// Slaney normalization gives every triangle unit area (in Hz);
		// sampling at 31.25 Hz bins makes the narrow low bands inexact.
		if len(f.w) > 8 && math.Abs(area-1) > 0.05 {
			t.Errorf("band %d area %.3f, want 1", m, area)
		}
	}
}

// A sine lands in the mel band whose centre is nearest its frequency, and its
// STFT magnitude is amp*sum(window)/2 at the sine's bin.
func TestLogMelLocatesTone(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := a.Config()
	lo, hi := hzToMel(cfg.FMin), hzToMel(cfg.FMax)
	centre := func(m int) float64 { return melToHz(lo + (hi-lo)*float64(m+1)/float64(cfg.NMels+1)) }
	for _, bin := range []int{10, 32, 96, 200} {
		freq := float64(bin) * 16000 / 512 // on a bin, so no leakage
		x := sine(16000, freq, 0.5, 16000)
		lm := a.LogMel(x)
		if lm.Frames != 1+16000/160 || lm.Bins != 80 || len(lm.Data) != lm.Frames*lm.Bins {
			t.Fatalf("shape %d x %d (%d values)", lm.Frames, lm.Bins, len(lm.Data))
		}
		row := lm.Row(lm.Frames / 2)
		best := 0
		for m, v := range row {
			if v > row[best] {
				best = m
			}
		}
		nearest := 0
		for m := range cfg.NMels {
			if math.Abs(centre(m)-freq) < math.Abs(centre(nearest)-freq) {
				nearest = m
			}
		}
		if best != nearest {
			t.Errorf("%g Hz: loudest band %d (%.0f Hz), want %d (%.0f Hz)", freq, best, centre(best), nearest, centre(nearest))
		}
		mag := a.Magnitude(x)
		got := float64(mag.Row(mag.Frames / 2)[bin])
		want := 0.5 * 400 / 2 / 2 // amp * sum(Hann(400)) / 2
		if math.Abs(got-want)/want > 0.01 {
			t.Errorf("%g Hz: |STFT| at its bin = %.2f, want %.2f", freq, got, want)
		}
	}
}

// TestLogMelMatchesSTFT pins the streaming LogMel to the definition:
// the filterbank over |STFT|^Power of the whole spectrogram, bit for bit,
// for both powers and for inputs shorter than a frame.
func TestLogMelMatchesSTFT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		power   float64
		samples int
	}{
		{"power", 2, 8000},
		{"magnitude", 1, 8000},
		{"shorter than a frame", 2, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewMelAnalyzer(MelConfig{Power: tc.power})
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, tc.samples)
			for i := range x {
				x[i] = float32(math.Sin(float64(i)*0.07) * math.Cos(float64(i)*0.0013))
			}
			got := a.LogMel(x)
			spec := a.stft(toFloat64(x), &stftWork{fft: fourier.NewFFT(a.cfg.NFFT), frame: make([]float64, a.cfg.NFFT)}, nil)
			frames := len(spec) / a.bins
			if got.Frames != frames || got.Bins != a.cfg.NMels {
				t.Fatalf("LogMel is %d x %d, want %d x %d", got.Frames, got.Bins, frames, a.cfg.NMels)
			}
			for f := range frames {
				for m, flt := range a.fb {
					var e float64
					for i, w := range flt.w {
						c := spec[f*a.bins+flt.start+i]
						p := real(c)*real(c) + imag(c)*imag(c)
						if tc.power == 1 {
							p = math.Sqrt(p)
						}
						e += w * p
					}
					if want := float32(math.Log(max(e, a.cfg.LogFloor))); got.Row(f)[m] != want {
						t.Fatalf("frame %d band %d: %g, want %g", f, m, got.Row(f)[m], want)
					}
				}
			}
		})
	}
}

func TestLogMelSilenceAndEmpty(t *testing.T) {
	a, err := NewMelAnalyzer(MelConfig{LogFloor: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	lm := a.LogMel(make([]float32, 1000))
	if lm.Frames != 1+1000/160 {
		t.Fatalf("%d frames, want %d", lm.Frames, 1+1000/160)
	}
	for i, v := range lm.Data {
		if math.Abs(float64(v)-math.Log(1e-5)) > 1e-5 {
			t.Fatalf("silence value %d = %v, want ln(1e-5)", i, v)
		}
	}
	if e := a.LogMel(nil); e.Frames != 0 || len(e.Data) != 0 {
		t.Errorf("no samples gave %d frames", e.Frames)
	}
	// The package-level shortcut gives the same features.
	lm2, err := LogMel(make([]float32, 1000), MelConfig{LogFloor: 1e-5})
	if err != nil || lm2.Frames != lm.Frames {
		t.Errorf("LogMel: %d frames, %v", lm2.Frames, err)
	}
}

// istft(stft(x)) gives x back: the overlapping windows cover every sample.
func TestSTFTRoundTrip(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	x := sine(16000, 440, 0.3, 4000)
	for i := range x {
		x[i] += float32(0.1 * math.Sin(float64(i)*0.37))
	}
	xf := toFloat64(x)
	w := &stftWork{fft: fourier.NewFFT(a.cfg.NFFT), frame: make([]float64, a.cfg.NFFT)}
	spec := a.stft(xf, w, nil)
	frames := len(spec) / a.bins
	y := a.istft(spec, frames, a.olaNorm(nil, frames, len(x)), w, nil)
	var maxErr float64
	for i := range x {
		maxErr = max(maxErr, math.Abs(y[i]-xf[i]))
	}
	if maxErr > 1e-9 {
		t.Errorf("istft(stft(x)) differs from x by up to %g", maxErr)
	}
}

func BenchmarkLogMel10s(b *testing.B) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		b.Fatal(err)
	}
	x := sine(16000, 440, 0.5, 10*16000)
	for b.Loop() {
		a.LogMel(x)
	}
}

func BenchmarkInvert2s60Iterations(b *testing.B) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		b.Fatal(err)
	}
	lm := a.LogMel(sine(16000, 440, 0.5, 2*16000))
	for b.Loop() {
		if _, err := a.Invert(b.Context(), lm, GriffinLimConfig{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMelToMagnitudeRepeats checks the shortcut for repeated frames (a unit
// vocoder's output) gives exactly what solving each frame alone gives.
func TestMelToMagnitudeRepeats(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	const nm = 80
	frame := func(seed int) []float32 {
		f := make([]float32, nm)
		for m := range f {
			f[m] = float32(-6 + 4*math.Sin(float64(m*(seed+1))/7))
		}
		return f
	}
	pattern := []int{0, 0, 0, 1, 2, 2, 0, 0} // repeats, a return to an earlier frame
	lm := Spectrogram{Frames: len(pattern), Bins: nm}
	for _, p := range pattern {
		lm.Data = append(lm.Data, frame(p)...)
	}
	got, err := a.MelToMagnitude(lm, 20)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pattern {
		one, err := a.MelToMagnitude(Spectrogram{Frames: 1, Bins: nm, Data: frame(p)}, 20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Row(i), one.Row(0)) {
			t.Fatalf("frame %d (pattern %d) differs from solving it alone", i, p)
		}
	}
}

// Griffin-Lim reuses its buffers from call to call, from goroutine to
// goroutine: a run after longer and shorter ones, some of them running at
// once, gives the bits of a run on a fresh analyzer.
func TestGriffinLimReusedBuffers(t *testing.T) {
	fresh := func() *MelAnalyzer {
		a, err := NewMelAnalyzer(DefaultMelConfig())
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cfg := GriffinLimConfig{Iterations: 4, NNLSIterations: 5}
	clips := []int{16000, 4000, 24000, 800}
	want := make([][]float32, len(clips))
	lms := make([]Spectrogram, len(clips))
	for i, n := range clips {
		a := fresh()
		lms[i] = a.LogMel(sine(16000, 200+float64(i)*90, 0.4, n))
		out, err := a.Invert(t.Context(), lms[i], cfg)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out
	}
	a := fresh()
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(clips))
	for range 4 {
		wg.Go(func() {
			for i := range clips {
				got, err := a.Invert(t.Context(), lms[i], cfg)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, want[i]) {
					errs <- fmt.Errorf("clip %d (%d samples) differs from a fresh analyzer's", i, clips[i])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
