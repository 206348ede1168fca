package audio

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/dsp/fourier"
)

func sine(rate int, freq, amp float64, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return x
}

func rms64(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

// peakFreq is the frequency of the largest FFT bin of x, over its longest
// power-of-two prefix (a prime length would make the FFT quadratic).
func peakFreq(x []float32, rate int) (freq, binHz float64) {
	n := 1
	for n*2 <= len(x) {
		n *= 2
	}
	x = x[:n]
	seq := make([]float64, len(x))
	for i, v := range x {
		// Hann window, so leakage from the edges does not move the peak.
		seq[i] = float64(v) * (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(x))))
	}
	fft := fourier.NewFFT(len(seq))
	coef := fft.Coefficients(nil, seq)
	best := 0
	for k := range coef {
		if math.Hypot(real(coef[k]), imag(coef[k])) > math.Hypot(real(coef[best]), imag(coef[best])) {
			best = k
		}
	}
	return fft.Freq(best) * float64(rate), float64(rate) / float64(len(x))
}

// An in-band sine comes out as the same sine at the new rate: same
// frequency, amplitude and phase (no delay). The error covers passband
// ripple and, when upsampling, the spectral images.
func TestResampleKeepsSine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, out int
		freq    float64
	}{
		{44100, 16000, 1000},
		{22050, 16000, 1000},
		{48000, 16000, 440},
		{8000, 16000, 3000}, // image at 5 kHz
		{16000, 8000, 3000},
		{16000, 22050, 5000},
		{16000, 44100, 7000},
		{11025, 16000, 4000},
		{44100, 16001, 1234}, // L = 16001 phases: interpolated table
	}
	const amp = 0.5
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.in)+"->"+strconv.Itoa(tc.out), func(t *testing.T) {
			r, err := NewResampler(tc.in, tc.out, ResampleConfig{})
			if err != nil {
				t.Fatal(err)
			}
			x := sine(tc.in, tc.freq, amp, tc.in) // 1 s
			y := r.Flush(r.Process(nil, x))
			if want := tc.out; len(y) != want {
				t.Fatalf("%d output samples, want %d", len(y), want)
			}
			skip := r.Taps() * tc.out / tc.in * 2
			mid := y[skip : len(y)-skip]
			ref := sine(tc.out, tc.freq, amp, len(y))[skip : len(y)-skip]
			diff := make([]float32, len(mid))
			for i := range mid {
				diff[i] = mid[i] - ref[i]
			}
			errDB := 20 * math.Log10(rms64(diff)/(amp/math.Sqrt2))
			t.Logf("%d -> %d Hz, %g Hz sine: error %.1f dB, %d taps, exact=%v", tc.in, tc.out, tc.freq, errDB, r.Taps(), r.exact)
			if errDB > -60 {
				t.Errorf("error %.1f dB relative to the sine, want <= -60 dB", errDB)
			}
			f, binHz := peakFreq(mid, tc.out)
			if math.Abs(f-tc.freq) > binHz {
				t.Errorf("FFT peak at %.1f Hz, want %g Hz (bin %.2f Hz)", f, tc.freq, binHz)
			}
		})
	}
}

// A tone above the output Nyquist frequency (and past the transition band)
// must not alias back: >= 60 dB below an in-band tone of the same amplitude.
func TestResampleRejectsAliases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, out int
		stop    []float64
	}{
		{44100, 16000, []float64{8500, 9000, 12000, 15000, 20000}},
		{22050, 16000, []float64{8500, 9500, 10800}},
		{48000, 16000, []float64{8400, 16000, 23000}},
		{16000, 8000, []float64{4300, 7000}},
		{44100, 16001, []float64{9000, 15000}},
	}
	const amp = 0.5
	worst := math.Inf(1)
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.in)+"->"+strconv.Itoa(tc.out), func(t *testing.T) {
			out := func(freq float64) float64 {
				y, err := Resample(Clip{Rate: tc.in, Samples: sine(tc.in, freq, amp, tc.in/4)}, tc.out)
				if err != nil {
					t.Fatal(err)
				}
				s := y.Samples
				return rms64(s[len(s)/8 : len(s)-len(s)/8])
			}
			ref := out(1000)
			for _, f := range tc.stop {
				att := 20 * math.Log10(ref/out(f))
				worst = min(worst, att)
				t.Logf("%d -> %d Hz: %g Hz tone attenuated %.1f dB", tc.in, tc.out, f, att)
				if att < 60 {
					t.Errorf("%g Hz tone attenuated only %.1f dB, want >= 60 dB", f, att)
				}
			}
		})
	}
	t.Logf("worst stopband attenuation: %.1f dB", worst)
}

// Feeding a stream in arbitrary chunks gives exactly the one-shot output.
func TestResampleStreamingMatchesOneShot(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 12000)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.1)
	}
	for _, rates := range [][2]int{{44100, 16000}, {8000, 16000}, {44100, 16001}} {
		r, err := NewResampler(rates[0], rates[1], ResampleConfig{})
		if err != nil {
			t.Fatal(err)
		}
		whole := r.Flush(r.Process(nil, x))
		for trial := range 3 {
			var y []float32
			for i := 0; i < len(x); {
				n := min(len(x)-i, rng.IntN(700))
				y = r.Process(y, x[i:i+n])
				i += n
			}
			y = r.Flush(y)
			if !slices.Equal(y, whole) {
				t.Errorf("%v trial %d: chunked output (%d samples) differs from one-shot (%d)", rates, trial, len(y), len(whole))
			}
		}
	}
}

func TestResampleLengthAndDC(t *testing.T) {
	t.Parallel()
	for _, rates := range [][2]int{{44100, 16000}, {22050, 16000}, {8000, 16000}, {16000, 16001}, {3, 2}} {
		for _, n := range []int{0, 1, 2, 7, 1000, 4321} {
			x := make([]float32, n)
			for i := range x {
				x[i] = 0.5
			}
			y, err := Resample(Clip{Rate: rates[0], Samples: x}, rates[1])
			if err != nil {
				t.Fatal(err)
			}
			want := (n*rates[1] + rates[0] - 1) / rates[0]
			if len(y.Samples) != want || y.Rate != rates[1] {
				t.Errorf("%v, %d samples: got %d at %d Hz, want %d", rates, n, len(y.Samples), y.Rate, want)
			}
			// Away from the edges a constant stays that constant.
			if n == 4321 {
				for i, v := range y.Samples[len(y.Samples)/4 : 3*len(y.Samples)/4] {
					if math.Abs(float64(v)-0.5) > 1e-4 {
						t.Errorf("%v: DC sample %d = %v, want 0.5", rates, i, v)
						break
					}
				}
			}
		}
	}
}

func TestResampleSameRateCopies(t *testing.T) {
	x := []float32{1, 2, 3}
	y, err := Resample(Clip{Rate: 16000, Samples: x}, 16000)
	if err != nil || !slices.Equal(y.Samples, x) {
		t.Fatalf("got %v, %v", y.Samples, err)
	}
	y.Samples[0] = 9
	if x[0] != 1 {
		t.Error("Resample at the same rate aliased its input")
	}
}

func TestNewResamplerErrors(t *testing.T) {
	tests := []struct {
		in, out int
		cfg     ResampleConfig
		msg     string
	}{
		{0, 16000, ResampleConfig{}, "input rate 0 Hz"},
		{16000, -1, ResampleConfig{}, "output rate -1 Hz"},
		{1 << 30, 16000, ResampleConfig{}, "input rate"},
		{16000, 8000, ResampleConfig{Passband: 1.2}, "Passband"},
		{16000, 8000, ResampleConfig{Attenuation: 5}, "Attenuation"},
		{16000, 8000, ResampleConfig{MaxPhases: 1}, "MaxPhases"},
	}
	for _, tc := range tests {
		if _, err := NewResampler(tc.in, tc.out, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("NewResampler(%d, %d, %+v): err = %v, want it to mention %q", tc.in, tc.out, tc.cfg, err, tc.msg)
		}
	}
	if _, err := Resample(Clip{Rate: 0}, 16000); err == nil {
		t.Error("Resample of a clip with rate 0: no error")
	}
}

// 10 s of 22.05 kHz audio must resample to 16 kHz well under a second.
func TestResampleSpeed(t *testing.T) {
	x := sine(22050, 440, 0.5, 10*22050)
	best := time.Duration(math.MaxInt64)
	runs := 3
	if raceEnabled {
		runs = 1
	}
	for range runs {
		start := time.Now()
		if _, err := Resample(Clip{Rate: 22050, Samples: x}, 16000); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	limit := time.Second
	if raceEnabled {
		limit *= 10 // the race detector instruments every load
	}
	t.Logf("10 s of 22050 Hz -> 16000 Hz in %v (race detector: %v)", best, raceEnabled)
	if best > limit {
		t.Errorf("took %v, want < %v", best, limit)
	}
}

func BenchmarkResample10s22050To16000(b *testing.B) {
	x := sine(22050, 440, 0.5, 10*22050)
	for b.Loop() {
		if _, err := Resample(Clip{Rate: 22050, Samples: x}, 16000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResample10s44100To16000(b *testing.B) {
	x := sine(44100, 440, 0.5, 10*44100)
	for b.Loop() {
		if _, err := Resample(Clip{Rate: 44100, Samples: x}, 16000); err != nil {
			b.Fatal(err)
		}
	}
}
