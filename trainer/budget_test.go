package trainer

import (
	"testing"
	"time"

	"babelfish.dev/babelfish/dataset/shard"
)

// TestBudgetPlan drives the planner with a fake clock: plans follow the
// measured speed, late ones too (the optimizer keeps the learning rate
// continuous across them), and stop in the last tenth.
func TestBudgetPlan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := budgetPlan{budget: 1000 * time.Second, start: t0}
	b.markStep, b.markTime, b.nextAt = 0, t0, planFirst
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := []struct {
		name   string
		now    float64
		step   int64
		want   int64 // 0: no plan
		replan bool
	}{
		{"not due", 5, 10, 0, false},
		// 50 steps in 50 s: 1 step/s, 950 s left less a 10 s reserve.
		{"first plan", 50, 50, 50 + 940, true},
		{"not due again", 100, 100, 0, false},
		// 250 more steps in 125 s: 2 steps/s over 815 s left.
		{"faster", 175, 300, 300 + 2*815, true},
		// Second half: 800 steps in 345 s over 470 s left plans more.
		{"growth late", 520, 1100, 1100 + 1089, true},
		// 250 steps in 330 s over 140 s left shrinks the plan.
		{"slower", 850, 1350, 1350 + 106, true},
		{"last tenth", 960, 1600, 0, false},
	}
	for _, s := range steps {
		got, ok := b.replan(at(s.now), s.step)
		if ok != s.replan || got != s.want {
			t.Fatalf("%s: plan %d, %v; want %d, %v", s.name, got, ok, s.want, s.replan)
		}
		if ok {
			b.planned = got
		}
	}
	if !b.spent(at(1000)) || b.spent(at(999)) {
		t.Error("budget spent at the wrong time")
	}
}

func TestBlockShards(t *testing.T) {
	shards := func(train int, each int64) *shard.Manifest {
		m := &shard.Manifest{Shards: []shard.ShardInfo{{Split: shard.SplitUnseenPhrases, Bytes: each}}}
		for range train {
			m.Shards = append(m.Shards, shard.ShardInfo{Split: shard.SplitTrain, Bytes: each})
		}
		return m
	}
	for _, tc := range []struct {
		name string
		m    *shard.Manifest
		n    int
		want int
	}{
		{"set", shards(20, 1<<20), 3, 3},
		{"auto: the whole split fits", shards(20, 40<<20), 0, 20},
		{"auto: exactly the cache", shards(8, DefaultDataCacheBytes/8), 0, 8},
		{"auto: over the cache", shards(200, 40<<20), 0, DefaultBlockShards},
		{"auto: no train shard", shards(0, 1), 0, 1},
	} {
		if got := blockShards(tc.m, tc.n); got != tc.want {
			t.Errorf("%s: blockShards(%d) = %d, want %d", tc.name, tc.n, got, tc.want)
		}
	}
}
