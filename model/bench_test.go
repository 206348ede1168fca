package model

import (
	"math/rand/v2"
	"syscall"
	"testing"

	"babelfish.dev/babelfish/model/units"
)

// BenchmarkGradients times one forward+backward at the default shape and
// the experiment's batch: 256 examples, 2 scored positions each.
func BenchmarkGradients(b *testing.B) {
	cfg := DefaultConfig([]string{"de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru", "sv"})
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	m, err := New(cfg, cb)
	if err != nil {
		b.Fatal(err)
	}
	const batch, positions = 256, 2
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
