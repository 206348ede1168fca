package audio

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"babelfish.dev/babelfish/internal/testenv"
)

// espeakWAV speaks text with espeak-ng (a real speech synthesizer, 22050 Hz
// 16-bit mono) and returns the WAV file's path.
func espeakWAV(t testing.TB, text string) string {
	t.Helper()
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "speech.wav")
	if out, err := exec.CommandContext(t.Context(), bin, "-w", path, text).CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v\n%s", err, out)
	}
	return path
}

func readWAVFile(t testing.TB, path string) Clip {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeWAV(b, DefaultLimits())
	if err != nil {
		t.Fatalf("decode %s: %v", filepath.Base(path), err)
	}
	return c
}

// espeak16k is a spoken sentence resampled to 16 kHz.
func espeak16k(t testing.TB, text string) Clip {
	t.Helper()
	c := readWAVFile(t, espeakWAV(t, text))
	if c.Rate != 22050 {
		t.Fatalf("espeak-ng wrote %d Hz, expected 22050", c.Rate)
	}
	r, err := Resample(c, 16000)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Files written by sox (an independent WAV writer) in every encoding sox
// offers decode to the same audio as the 16-bit original.
func TestReadWAVFromSox(t *testing.T) {
	t.Parallel()
	sox, err := testenv.SystemTool("sox")
	if err != nil {
		t.Fatal(err)
	}
	src := espeakWAV(t, "Seven hundred and twelve.")
	ref := readWAVFile(t, src)
	tests := []struct {
		name string
		args []string
		tol  float64
	}{
		{"pcm8", []string{"-b", "8"}, 1.0 / 128},
		{"pcm24 extensible", []string{"-b", "24"}, 0},
		{"pcm32 extensible", []string{"-b", "32"}, 0},
		{"float32", []string{"-e", "floating-point", "-b", "32"}, 0},
		{"float64", []string{"-e", "floating-point", "-b", "64"}, 0},
		{"stereo", []string{"-c", "2"}, 0},
		{"6 channels extensible", []string{"-c", "6"}, 1e-7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.wav")
			// -D: no dither, so the conversion is deterministic.
			args := append(append([]string{"-D", src}, tc.args...), out)
			if b, err := exec.CommandContext(t.Context(), sox, args...).CombinedOutput(); err != nil {
				t.Fatalf("sox %v: %v\n%s", args, err, b)
			}
			c := readWAVFile(t, out)
			if c.Rate != ref.Rate || len(c.Samples) != len(ref.Samples) {
				t.Fatalf("got %d samples at %d Hz, want %d at %d Hz", len(c.Samples), c.Rate, len(ref.Samples), ref.Rate)
			}
			var worst float64
			for i, v := range c.Samples {
				worst = max(worst, math.Abs(float64(v-ref.Samples[i])))
			}
			if worst > tc.tol {
				t.Errorf("differs from the 16-bit original by up to %g, want <= %g", worst, tc.tol)
			}
		})
	}
}

// spectralConvergence is ||ref - got||_F / ||ref||_F over the frames both
// have.
func spectralConvergence(ref, got Spectrogram) float64 {
	n := min(len(ref.Data), len(got.Data))
	var num, den float64
	for i := range n {
		d := float64(ref.Data[i] - got.Data[i])
		num += d * d
		den += float64(ref.Data[i]) * float64(ref.Data[i])
	}
	return math.Sqrt(num / den)
}

// melMagnitude is the filterbank applied to |STFT| (Power 1), exp'ed back
// from the log: the "mel magnitude" domain the SC figures are quoted in.
func melMagnitude(t testing.TB, x []float32) Spectrogram {
	t.Helper()
	a, err := NewMelAnalyzer(MelConfig{Power: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := a.LogMel(x)
	for i, v := range s.Data {
		s.Data[i] = float32(math.Exp(float64(v)))
	}
	return s
}

// Griffin-Lim inversion of real speech's log-mel spectrogram. Bounds, set
// from measured values with margin (measured: see the log line):
//   - mel-magnitude SC of the reconstruction vs the input < 0.12
//   - linear-magnitude SC vs the original < 0.25 (larger: 80 mel bands
//     cannot carry the harmonics above ~1 kHz, NNLS can only smear them)
//   - 40 iterations beat 3 by at least 30% (so the loop is doing work).
func TestGriffinLimSpeechMelSCBelow012(t *testing.T) {
	t.Parallel()
	speech := espeak16k(t, "Three hundred and twenty one.")
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	lm := a.LogMel(speech.Samples)
	refMel := melMagnitude(t, speech.Samples)
	refLin := a.Magnitude(speech.Samples)

	measure := func(iters int) (melSC, linSC float64, y []float32) {
		y, err := a.Invert(t.Context(), lm, GriffinLimConfig{Iterations: iters, Length: len(speech.Samples)})
		if err != nil {
			t.Fatal(err)
		}
		if len(y) != len(speech.Samples) {
			t.Fatalf("%d samples, want %d", len(y), len(speech.Samples))
		}
		return spectralConvergence(refMel, melMagnitude(t, y)), spectralConvergence(refLin, a.Magnitude(y)), y
	}
	mel3, lin3, y3 := measure(3)
	mel40, lin40, _ := measure(40)
	t.Logf("%.2f s of speech; SC after 3 iterations: mel %.4f, linear %.4f; after 40: mel %.4f, linear %.4f",
		speech.Seconds(), mel3, lin3, mel40, lin40)
	if mel40 >= 0.12 {
		t.Errorf("mel-domain SC %.4f, want < 0.12", mel40)
	}
	if lin40 >= 0.25 {
		t.Errorf("linear-domain SC %.4f, want < 0.25", lin40)
	}
	if mel40 > 0.7*mel3 {
		t.Errorf("40 iterations gave mel SC %.4f, 3 gave %.4f: want at least 30%% lower", mel40, mel3)
	}
	// The same seed gives the same waveform.
	if _, _, again := measure(3); !slices.Equal(y3, again) {
		t.Error("two runs with the same seed differ")
	}
}

// Griffin-Lim from an exact (consistent) linear magnitude converges close to
// it; fast Griffin-Lim's momentum gets there faster than plain, and a warm
// start from the waveform itself is there at once.
func TestGriffinLimFromTrueMagnitude(t *testing.T) {
	t.Parallel()
	speech := espeak16k(t, "Monday.")
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	mag := a.Magnitude(speech.Samples)
	sc := func(momentum float64) float64 {
		y, err := a.GriffinLim(t.Context(), mag, GriffinLimConfig{Iterations: 40, Momentum: momentum, Length: len(speech.Samples)})
		if err != nil {
			t.Fatal(err)
		}
		return spectralConvergence(mag, a.Magnitude(y))
	}
	fast, plain := sc(0.99), sc(-1)
	t.Logf("linear SC after 40 iterations: fast %.4f, plain %.4f", fast, plain)
	if fast >= plain {
		t.Errorf("fast Griffin-Lim SC %.4f, plain %.4f: want fast < plain", fast, plain)
	}
	if fast > 0.15 {
		t.Errorf("fast Griffin-Lim SC %.4f, want < 0.15", fast)
	}

	// A warm start (GriffinLimConfig.Init) from the waveform itself is
	// already consistent: one iteration lands far closer than a random
	// start does.
	n := len(speech.Samples)
	one := func(init []float32) float64 {
		y, err := a.GriffinLim(t.Context(), mag, GriffinLimConfig{Iterations: 1, Length: n, Init: init})
		if err != nil {
			t.Fatal(err)
		}
		return spectralConvergence(mag, a.Magnitude(y))
	}
	warm, cold := one(speech.Samples), one(nil)
	t.Logf("SC after 1 iteration: warm start %.4f, random phase %.4f", warm, cold)
	if warm > 0.01 || warm > cold/10 {
		t.Errorf("warm start SC %.4f (random %.4f): want < 0.01 and a tenth of random", warm, cold)
	}
	if _, err := a.GriffinLim(t.Context(), mag, GriffinLimConfig{Length: n, Init: speech.Samples[:n-1]}); err == nil {
		t.Error("Init shorter than Length: no error")
	}
}

func TestGriffinLimErrors(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	lm := a.LogMel(sine(16000, 440, 0.5, 1600))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Invert(ctx, lm, GriffinLimConfig{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
	bad := []struct {
		name string
		spec Spectrogram
		cfg  GriffinLimConfig
	}{
		{"wrong bins", Spectrogram{Frames: 2, Bins: 40, Data: make([]float32, 80)}, GriffinLimConfig{}},
		{"short data", Spectrogram{Frames: 2, Bins: 80, Data: make([]float32, 10)}, GriffinLimConfig{}},
		{"length off", lm, GriffinLimConfig{Length: 5}},
		{"negative iterations", lm, GriffinLimConfig{Iterations: -1}},
		{"momentum too big", lm, GriffinLimConfig{Momentum: 2}},
	}
	for _, tc := range bad {
		if _, err := a.Invert(context.Background(), tc.spec, tc.cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if y, err := a.Invert(context.Background(), Spectrogram{Bins: 80}, GriffinLimConfig{}); err != nil || len(y) != 0 {
		t.Errorf("empty spectrogram: %d samples, %v", len(y), err)
	}
}

// One analyzer serves many goroutines at once (run under -race).
func TestMelAnalyzerConcurrentUse(t *testing.T) {
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	x := sine(16000, 700, 0.5, 3200)
	want := a.LogMel(x)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			if got := a.LogMel(x); !slices.Equal(got.Data, want.Data) {
				errs <- errors.New("concurrent LogMel differs")
			}
			if _, err := a.Invert(context.Background(), want, GriffinLimConfig{Iterations: 2}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A single frame inverts too (default length 1).
	one := Spectrogram{Frames: 1, Bins: 80, Data: slices.Clone(want.Row(5))}
	if y, err := a.Invert(context.Background(), one, GriffinLimConfig{Iterations: 2}); err != nil || len(y) != 1 {
		t.Errorf("single frame: %d samples, %v", len(y), err)
	}
}
