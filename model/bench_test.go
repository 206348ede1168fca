package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/units"
)

// BenchmarkGradients times one forward+backward at the default shape and
// a batch of 256 examples, with 2, 4 and 8 scored positions each.
func BenchmarkGradients(b *testing.B) {
	cfg := DefaultConfig([]string{"de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru", "sv"})
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	m, err := New(cfg, cb)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 256
	rng := rand.New(rand.NewPCG(1, 2))
	exs := make([]Example, batch)
	for i := range exs {
		in := make([]float32, cfg.InputSize())
		for j := range in {
			in[j] = float32(rng.NormFloat64())
		}
		n := 20 + rng.IntN(cfg.MaxUnits-21)
		seq := units.Sequence{}
		for range n {
			seq.Units = append(seq.Units, rng.IntN(cfg.Units))
			seq.Durations = append(seq.Durations, 1+rng.IntN(cfg.MaxDuration))
		}
		exs[i] = Example{Input: in, Target: rng.IntN(len(cfg.Languages)), Units: seq, Seed: uint64(i)}
	}
	// The trainer's default scores 2 sampled positions per example; more
	// feed the decoder more per step for the cost of its layers only.
	for _, positions := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("positions=%d", positions), func(b *testing.B) {
			g, err := m.NewGraph(batch, positions)
			if err != nil {
				b.Fatal(err)
			}
			grads := make([]float32, m.Params().Size())
			b.ResetTimer()
			c0 := cpuSeconds()
			for range b.N {
				if _, err := g.Gradients(exs, grads); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuSeconds()-c0)/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuSeconds is the process's user+system CPU time: on a shared machine it
// measures work where wall time measures the neighbours.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkTranslate times serving's work for one request and for a batch
// of 16 (1.5 s of input, at most 0.5 s of output), random weights; with
// -cpuprofile it shows where a request's CPU goes.
func BenchmarkTranslate(b *testing.B) {
	cfg := DefaultConfig([]string{"de", "en", "fr"})
	rng := rand.New(rand.NewPCG(1, 1))
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	for i := range cb.Centroids {
		cb.Centroids[i] = -6 + 4*rng.Float32()
	}
	m, err := New(cfg, cb)
	if err != nil {
		b.Fatal(err)
	}
	rate := m.Frontend().Rate()
	x := make([]float32, rate*3/2)
	for i := range x {
		t := float64(i) / float64(rate)
		x[i] = float32(0.3 * math.Max(0, math.Sin(2*math.Pi*1.5*t)) * math.Sin(2*math.Pi*150*t))
	}
	for _, voc := range []string{VocoderGriffinLim, VocoderLoops} {
		if _, err := m.VocoderOf(context.Background(), voc); err != nil { // loops: built once, outside the timing
			b.Fatal(err)
		}
		for _, n := range []int{1, 16} {
			b.Run(fmt.Sprintf("vocoder=%s/batch=%d", voc, n), func(b *testing.B) {
				ins := make([]Input, n)
				for i := range ins {
					ins[i] = Input{Audio: audio.Clip{Rate: rate, Samples: x}, TargetLang: cfg.Languages[i%3]}
				}
				c0 := cpuSeconds()
				for b.Loop() {
					if _, err := m.Translate(context.Background(), ins, DecodeOptions{MaxSeconds: 0.5, Vocoder: voc}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric((cpuSeconds()-c0)/float64(b.N)/float64(n), "cpu-s/input")
			})
		}
	}
}

// BenchmarkDecodeGreedyBatch times the network alone (encoder, context and
// greedy decoder, 0.5 s of output) per row as the batch grows, at the
// default shape (4 MB of weights, within the last-level cache) and at
// four times its widths with three decoder layers (68 MB, beyond it): the
// weight reuse that makes a batch cheaper per input.
func BenchmarkDecodeGreedyBatch(b *testing.B) {
	for _, scale := range []int{1, 4} {
		cfg := DefaultConfig([]string{"de", "en", "fr"})
		if scale > 1 {
			for i := range cfg.EncoderHidden {
				cfg.EncoderHidden[i] *= scale
			}
			cfg.ContextHidden *= scale
			cfg.DecoderHidden *= scale
			cfg.DecoderLayers = 3
		}
		cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
		m, err := New(cfg, cb)
		if err != nil {
			b.Fatal(err)
		}
		// As bench/serving does: no early end, durations of 1 or 2 frames.
		ub, _ := m.Params().Get("dec.unit.b")
		db, _ := m.Params().Get("dec.dur.b")
		ub.Data[cfg.Units] = -1e4
		db.Data[0] += 50
		db.Data[1] += 50
		rng := rand.New(rand.NewPCG(1, 2))
		for _, rows := range []int{1, 2, 4, 8, 16} {
			xs := make([][]float32, rows)
			langs := make([]int, rows)
			for i := range xs {
				xs[i] = make([]float32, cfg.InputSize())
				for j := range xs[i] {
					xs[i][j] = float32(rng.NormFloat64())
				}
				langs[i] = i % len(cfg.Languages)
			}
			b.Run(fmt.Sprintf("scale=%d/rows=%d", scale, rows), func(b *testing.B) {
				for b.Loop() {
					m.decodeGreedyBatch(xs, langs, m.maxFrames(DecodeOptions{MaxSeconds: 0.5}))
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*rows), "us/row")
			})
		}
	}
}
