package audio

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
)

// A sound held still (a 100 Hz buzz: every frame's magnitude is the same)
// comes back from LoopGriffinLim as a loop whose frames, read around the
// seam, have that magnitude; the loop is deterministic per seed.
func TestLoopGriffinLimHoldsMagnitude(t *testing.T) {
	t.Parallel()
	a, err := NewMelAnalyzer(DefaultMelConfig())
	if err != nil {
		t.Fatal(err)
	}
	const rate, f0 = 16000, 100 // period 160 samples: one hop
	x := make([]float32, 4*rate/10)
	for i := range x {
		for h := 1; h <= 30; h++ {
			x[i] += float32(math.Sin(2*math.Pi*float64(h*f0*i)/rate+float64(h*h)) / float64(h))
		}
	}
	mag := a.Magnitude(x)
	target := mag.Row(mag.Frames / 2)
	period := 16 * a.Config().Hop
	measure := func(iters int, seed uint64) (float64, []float32) {
		y, err := a.LoopGriffinLim(t.Context(), target, period, GriffinLimConfig{Iterations: iters, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if len(y) != period {
			t.Fatalf("loop has %d samples, want %d", len(y), period)
		}
		// Three periods in a row, analysed away from the ends: frames that
		// straddle the seams count like the others.
		long := slices.Concat(y, y, y)
		got := a.Magnitude(long)
		var num, den float64
		for f := period / a.Config().Hop; f < 2*period/a.Config().Hop; f++ {
			for k, v := range got.Row(f) {
				d := float64(v - target[k])
				num += d * d
				den += float64(target[k]) * float64(target[k])
			}
		}
		return math.Sqrt(num / den), y
	}
	sc2, _ := measure(2, 1)
	sc64, y := measure(64, 1)
	t.Logf("loop SC against the held magnitude: 2 iterations %.4f, 64 iterations %.4f", sc2, sc64)
	if sc64 >= 0.1 {
		t.Errorf("SC after 64 iterations %.4f, want < 0.1", sc64)
	}
	if sc64 > 0.7*sc2 {
		t.Errorf("64 iterations gave SC %.4f, 2 gave %.4f: want at least 30%% lower", sc64, sc2)
	}
	if _, again := measure(64, 1); !slices.Equal(y, again) {
		t.Error("two loops with the same seed differ")
	}
	if _, other := measure(64, 2); slices.Equal(y, other) {
		t.Error("loops with different seeds are equal")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.LoopGriffinLim(ctx, target, period, GriffinLimConfig{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
	for _, tc := range []struct {
		name   string
		mag    []float32
		period int
	}{
		{"wrong bins", target[:10], period},
		{"period not whole hops", target, period + 1},
		{"period shorter than NFFT", target, a.Config().Hop},
	} {
		if _, err := a.LoopGriffinLim(context.Background(), tc.mag, tc.period, GriffinLimConfig{}); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
