package audio

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestClipDuration(t *testing.T) {
	tests := []struct {
		c    Clip
		want time.Duration
	}{
		{Clip{Rate: 16000, Samples: make([]float32, 24000)}, 1500 * time.Millisecond},
		{Clip{Rate: 22050, Samples: make([]float32, 22050*3)}, 3 * time.Second},
		{Clip{Rate: 0, Samples: make([]float32, 10)}, 0},
		{Clip{Rate: 8000}, 0},
	}
	for _, tc := range tests {
		if got := tc.c.Duration(); got != tc.want {
			t.Errorf("%d samples at %d Hz: Duration %v, want %v", len(tc.c.Samples), tc.c.Rate, got, tc.want)
		}
		if got := tc.c.Seconds(); math.Abs(got-tc.want.Seconds()) > 1e-12 {
			t.Errorf("%d samples at %d Hz: Seconds %v, want %v", len(tc.c.Samples), tc.c.Rate, got, tc.want.Seconds())
		}
	}
}

func TestPeakNormalizeRMS(t *testing.T) {
	tests := []struct {
		name     string
		x        []float32
		peak     float32
		rms      float32
		target   float32
		want     []float32
		wantGain float32
	}{
		{"empty", nil, 0, 0, 0.9, nil, 1},
		{"silence untouched", []float32{0, 0}, 0, 0, 0.9, []float32{0, 0}, 1},
		{"negative peak", []float32{0.1, -0.5, 0.25}, 0.5, float32(math.Sqrt((0.01 + 0.25 + 0.0625) / 3)), 1, []float32{0.2, -1, 0.5}, 2},
		{"square wave", []float32{0.5, -0.5, 0.5, -0.5}, 0.5, 0.5, 0.25, []float32{0.25, -0.25, 0.25, -0.25}, 0.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Peak(tc.x); got != tc.peak {
				t.Errorf("Peak = %v, want %v", got, tc.peak)
			}
			if got := RMS(tc.x); math.Abs(float64(got-tc.rms)) > 1e-7 {
				t.Errorf("RMS = %v, want %v", got, tc.rms)
			}
			x := slices.Clone(tc.x)
			if g := Normalize(x, tc.target); g != tc.wantGain {
				t.Errorf("Normalize gain %v, want %v", g, tc.wantGain)
			}
			if !slices.Equal(x, tc.want) {
				t.Errorf("Normalize gave %v, want %v", x, tc.want)
			}
		})
	}
}

func TestFrameRMS(t *testing.T) {
	x := []float32{1, 1, 1, 1, 0, 0, 0, 0, 2, 2}
	tests := []struct {
		frame, hop int
		want       []float32
	}{
		{4, 4, []float32{1, 0, 2}}, // last frame partial: 2 samples
		{2, 2, []float32{1, 1, 0, 0, 2}},
		{10, 5, []float32{float32(math.Sqrt(12.0 / 10))}},
		{20, 5, []float32{float32(math.Sqrt(12.0 / 10))}},
		{4, 3, []float32{1, 0.5, float32(math.Sqrt2)}}, // frames at 0, 3, 6
		{0, 0, x}, // clamped to 1: each sample's magnitude
	}
	for _, tc := range tests {
		got := FrameRMS(x, tc.frame, tc.hop)
		if len(got) != len(tc.want) {
			t.Errorf("frame %d hop %d: %v, want %v", tc.frame, tc.hop, got, tc.want)
			continue
		}
		for i := range got {
			if math.Abs(float64(got[i]-tc.want[i])) > 1e-6 {
				t.Errorf("frame %d hop %d: %v, want %v", tc.frame, tc.hop, got, tc.want)
				break
			}
		}
	}
	if got := FrameRMS(nil, 400, 160); got != nil {
		t.Errorf("no samples gave %v", got)
	}
}

func TestDBFS(t *testing.T) {
	for _, tc := range []struct {
		v    float32
		want float64
	}{{1, 0}, {0.1, -20}, {0.5, -6.0206}, {0, -120}, {1e-9, -120}, {-1, -120}} {
		if got := DBFS(tc.v); math.Abs(got-tc.want) > 1e-4 {
			t.Errorf("DBFS(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
