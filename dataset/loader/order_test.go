package loader

import (
	"slices"
	"testing"
)

func drain(t *testing.T, o Order, p Partition, epoch int) []int {
	t.Helper()
	perm := o.Epoch(epoch)
	var got []int
	c := Cursor{Epoch: epoch}
	for {
		b, next := p.Batch(perm, c)
		if next.Epoch != epoch {
			return got
		}
		got = append(got, b...)
		c = next
	}
}

func TestExactlyOncePerEpoch(t *testing.T) {
	o := Order{Seed: 7, ShardSizes: []int{5, 3, 8, 1, 6}, BlockShards: 2}
	for world := 1; world <= 4; world++ {
		for _, gb := range []int{world, 4, 7, 8} {
			if gb < world {
				continue
			}
			for epoch := 0; epoch < 3; epoch++ {
				seen := make([]int, o.Len())
				for rank := 0; rank < world; rank++ {
					for _, s := range drain(t, o, Partition{Rank: rank, World: world, GlobalBatch: gb}, epoch) {
						seen[s]++
					}
				}
				for s, n := range seen {
					if n != 1 {
						t.Fatalf("world %d batch %d epoch %d: sample %d seen %d times, want exactly once", world, gb, epoch, s, n)
					}
				}
			}
		}
	}
}

// TestCoverageCheckFails makes sure the exactly-once check above can fail:
// padding duplicates samples, and the check must notice.
func TestCoverageCheckFails(t *testing.T) {
	o := Order{Seed: 1, ShardSizes: []int{5}}
	seen := map[int]int{}
	for rank := 0; rank < 2; rank++ {
		for _, s := range drain(t, o, Partition{Rank: rank, World: 2, GlobalBatch: 4, Pad: true}, 0) {
			seen[s]++
		}
	}
	dup := 0
	for _, n := range seen {
		if n > 1 {
			dup++
		}
	}
	if dup == 0 {
		t.Fatal("padding 5 samples to batches of 4 duplicated nothing")
	}
}

func TestEpochsDifferAndAreDeterministic(t *testing.T) {
	o := Order{Seed: 3, ShardSizes: []int{10, 10, 10}, BlockShards: 3}
	if !slices.Equal(o.Epoch(1), o.Epoch(1)) {
		t.Error("same (seed, epoch) gave two orders")
	}
	if slices.Equal(o.Epoch(1), o.Epoch(2)) {
		t.Error("epochs 1 and 2 have the same order")
	}
	o2 := o
	o2.Seed = 4
	if slices.Equal(o.Epoch(1), o2.Epoch(1)) {
		t.Error("seeds 3 and 4 have the same order")
	}
}

func TestBlocksKeepShardsTogether(t *testing.T) {
	o := Order{Seed: 5, ShardSizes: []int{4, 4, 4, 4}, BlockShards: 1}
	perm := o.Epoch(0)
	for i := 0; i < len(perm); i += 4 {
		shard := perm[i] / 4
		for _, s := range perm[i : i+4] {
			if s/4 != shard {
				t.Fatalf("block shuffling of 1 shard mixed shards: %v", perm)
			}
		}
	}
}

// TestResumeAndElastic: the global sequence (all ranks' samples, step by
// step) is the same whether the job runs straight through, stops and
// resumes from a cursor, or resumes with another world size.
func TestResumeAndElastic(t *testing.T) {
	o := Order{Seed: 11, ShardSizes: []int{7, 9, 4, 12}, BlockShards: 2}
	const gb = 8
	perm := o.Epoch(0)
	global := func(world int, c Cursor) ([]int, Cursor) {
		var all []int
		var next Cursor
		for rank := 0; rank < world; rank++ {
			var b []int
			b, next = Partition{Rank: rank, World: world, GlobalBatch: gb}.Batch(perm, c)
			all = append(all, b...)
		}
		return all, next
	}
	var straight []int
	for c := (Cursor{}); c.Epoch == 0; {
		var b []int
		b, c = global(4, c)
		straight = append(straight, b...)
	}
	var resumed []int
	c := Cursor{}
	for step := 0; step < 2; step++ { // world 4 for two steps, then "killed"
		var b []int
		b, c = global(4, c)
		resumed = append(resumed, b...)
	}
	for c.Epoch == 0 { // resumed from the cursor with world 2
		var b []int
		b, c = global(2, c)
		resumed = append(resumed, b...)
	}
	if !slices.Equal(straight, resumed) {
		t.Errorf("elastic 4 -> 2 resume changed the sequence:\n%v\n%v", straight, resumed)
	}
}

func TestPartitionValidate(t *testing.T) {
	tests := []struct {
		p    Partition
		want bool
	}{
		{Partition{Rank: 0, World: 1, GlobalBatch: 1}, true},
		{Partition{Rank: 2, World: 2, GlobalBatch: 4}, false},
		{Partition{Rank: 0, World: 0, GlobalBatch: 4}, false},
		{Partition{Rank: 0, World: 4, GlobalBatch: 2}, false},
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); (err == nil) != tt.want {
			t.Errorf("%+v: Validate() = %v", tt.p, err)
		}
	}
}
