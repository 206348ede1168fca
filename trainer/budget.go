package trainer

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/model"
)

// Budget planning: the first plan comes after planFirst steps, then one
// every planEvery, each from the speed of the steps since the last one.
const (
	planFirst = 50
	planEvery = 250
)

// budgetPlan turns a wall-clock budget into a step count from measured
// speed. Only rank 0 runs it; the plan reaches the others through the
// step's all-reduce.
type budgetPlan struct {
	budget time.Duration
	// start is when the budget began (earlier than this run on resume).
	start time.Time
	// planned is the current step count (0 before the first plan).
	planned int64
	// The current speed window and the step of the next plan.
	markStep int64
	markTime time.Time
	nextAt   int64
}

// markFrom opens the first speed window at step.
func (b *budgetPlan) markFrom(step int64) {
	b.markStep, b.markTime, b.nextAt = step, time.Now(), step+planFirst
}

// left is the budget left at now.
func (b *budgetPlan) left(now time.Time) time.Duration { return b.budget - now.Sub(b.start) }

// spent reports whether the budget is used up at now.
func (b *budgetPlan) spent(now time.Time) bool { return b.budget > 0 && b.left(now) <= 0 }

// replan returns a new step count when one is due at step (steps done
// once the current one ends): the step plus what the recent speed fits in
// the budget left, less a reserve for the final checkpoint. Over the last
// tenth of the budget an existing plan is kept, so the decay's tail plays
// out as scheduled instead of chasing noise. A plan may grow as well as
// shrink: the optimizer re-anchors its decay at each new plan
// (model.Adam.SetDecaySteps), so the learning rate never jumps back up, and
// a machine that speeds up late uses its whole budget.
func (b *budgetPlan) replan(now time.Time, step int64) (int64, bool) {
	if b.budget <= 0 || step < b.nextAt {
		return 0, false
	}
	left := b.left(now)
	if b.planned > 0 && left < b.budget/10 {
		return 0, false
	}
	defer func() { b.markStep, b.markTime, b.nextAt = step, now, step+planEvery }()
	el := now.Sub(b.markTime).Seconds()
	if el <= 0 {
		return 0, false
	}
	rate := float64(step-b.markStep) / el
	reserve := min(30*time.Second, b.budget/100)
	p := step + int64(math.Max(0, rate*(left-reserve).Seconds()))
	return p, true
}

// DefaultDataCacheBytes is the largest train split the loader keeps whole
// in memory by default.
const DefaultDataCacheBytes = 4 << 30

// trainSplit counts the train split's shards and bytes.
func trainSplit(m *shard.Manifest) (shards int, bytes int64) {
	for _, s := range m.Shards {
		if s.Split == shard.SplitTrain {
			shards++
			bytes += s.Bytes
		}
	}
	return shards, bytes
}

// blockShards resolves Config.BlockShards n: n itself when set, else every
// train shard when the split fits DefaultDataCacheBytes (held in memory
// whole, so mixing all of it costs no reads), else DefaultBlockShards.
func blockShards(m *shard.Manifest, n int) int {
	if n > 0 {
		return n
	}
	shards, bytes := trainSplit(m)
	if bytes > DefaultDataCacheBytes {
		return DefaultBlockShards
	}
	return max(shards, 1)
}

// dataCacheBytes is the loader cache for a job: o when set, else the whole
// train split when it fits DefaultDataCacheBytes, else the loader's
// default (0).
func dataCacheBytes(m *shard.Manifest, o int64) int64 {
	if o > 0 {
		return o
	}
	if _, train := trainSplit(m); train <= DefaultDataCacheBytes {
		return train
	}
	return 0
}

// exampleSeed is the training noise seed of sample index in epoch: the
// same on whichever rank reads the sample, different every epoch.
func exampleSeed(seed uint64, epoch, index int) uint64 {
	return pairSeed(epoch, index) ^ (seed * 0x9e3779b97f4a7c15)
}

// warpVariant picks which of n encoder inputs a sample trains on, from its
// example seed: the same on every rank, another one every epoch.
func warpVariant(exampleSeed uint64, n int) int {
	if n <= 1 {
		return 0
	}
	return rand.New(rand.NewPCG(exampleSeed, 0x7a4b)).IntN(n)
}

// buildExamples draws each sample's target and builds its training pair,
// in sample order, spreading feature extraction (the first epoch decodes
// every utterance) over the CPUs.
func buildExamples(m *model.Model, cache *featureCache, flt filters, seed uint64, b loader.Batch) ([]model.Example, error) {
	type slot struct {
		ex  model.Example
		ok  bool
		err error
	}
	slots := make([]slot, len(b.Samples))
	work := func(i int) {
		s := b.Samples[i]
		tgt, ok := flt.drawTarget(seed, b.Start.Epoch, s)
		if !ok {
			return
		}
		es := exampleSeed(seed, b.Start.Epoch, s.Index)
		ex, err := cache.example(m, s, tgt, warpVariant(es, cache.variants()))
		ex.Seed = es
		slots[i] = slot{ex: ex, ok: err == nil, err: err}
	}
	workers := min(runtime.GOMAXPROCS(0), len(b.Samples))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				work(i)
			}
		})
	}
	for i := range b.Samples {
		next <- i
	}
	close(next)
	wg.Wait()
	exs := make([]model.Example, 0, len(b.Samples))
	for _, s := range slots {
		if s.err != nil {
			return nil, s.err
		}
		if s.ok {
			exs = append(exs, s.ex)
		}
	}
	return exs, nil
}

// round4 keeps log lines short.
func round4(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	return math.Round(x*1e4) / 1e4
}
