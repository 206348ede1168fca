package loader

import (
	"fmt"
	"math/rand/v2"
)

// Order is the global sample order of a dataset version: a pure function of
// (seed, epoch) over the version's shard sizes. Every rank of a job computes
// the same Order; each takes its own slice of each global batch.
//
// Samples are numbered shard by shard. An epoch's order shuffles the shards,
// then shuffles samples inside blocks of consecutive (shuffled) shards, so a
// reader streams a few shards at a time (sequential reads) while the order
// still mixes across shards.
type Order struct {
	Seed uint64
	// ShardSizes is the number of samples in each shard, in manifest order.
	ShardSizes []int
	// BlockShards is how many consecutive shards are mixed together; 1 keeps
	// each shard's samples together (only shuffled inside the shard).
	BlockShards int
}

// Len is the number of samples in one epoch.
func (o Order) Len() int {
	n := 0
	for _, s := range o.ShardSizes {
		n += s
	}
	return n
}

// Epoch returns the permutation of sample indices for one epoch.
func (o Order) Epoch(epoch int) []int {
	rng := rand.New(rand.NewPCG(o.Seed, uint64(epoch)*0x9e3779b97f4a7c15+1))
	starts := make([]int, len(o.ShardSizes))
	n := 0
	for i, s := range o.ShardSizes {
		starts[i] = n
		n += s
	}
	shards := rng.Perm(len(o.ShardSizes))
	block := max(o.BlockShards, 1)
	out := make([]int, 0, n)
	for b := 0; b < len(shards); b += block {
		first := len(out)
		for _, sh := range shards[b:min(b+block, len(shards))] {
			for i := 0; i < o.ShardSizes[sh]; i++ {
				out = append(out, starts[sh]+i)
			}
		}
		blk := out[first:]
		rng.Shuffle(len(blk), func(i, j int) { blk[i], blk[j] = blk[j], blk[i] })
	}
	return out
}

// Cursor is where a job is in the global sample sequence. It is all a
// checkpoint needs to resume the data stream exactly, whatever the world
// size of the job that resumes.
type Cursor struct {
	Epoch  int `json:"epoch"`
	Sample int `json:"sample"` // samples of this epoch already consumed, by all ranks together
}

// Partition says which part of each global batch a rank reads.
type Partition struct {
	Rank, World int
	// GlobalBatch is the number of samples all ranks together consume per
	// step. It must not change on an elastic resume, so the sequence does not.
	GlobalBatch int
	// Pad fills the epoch's last, short global batch with samples from the
	// epoch's start so every rank gets an equal share; off by default, so
	// each sample is seen exactly once per epoch.
	Pad bool
}

// Validate checks the partition's fields.
func (p Partition) Validate() error {
	switch {
	case p.World < 1:
		return fmt.Errorf("world size %d: want >= 1", p.World)
	case p.Rank < 0 || p.Rank >= p.World:
		return fmt.Errorf("rank %d: want 0 <= rank < world size %d", p.Rank, p.World)
	case p.GlobalBatch < p.World:
		return fmt.Errorf("global batch %d: want >= world size %d", p.GlobalBatch, p.World)
	}
	return nil
}

// share returns [lo, hi) of a batch of n samples that rank takes: equal
// contiguous parts, the first n%world ranks one longer.
func share(n, rank, world int) (lo, hi int) {
	q, r := n/world, n%world
	lo = rank*q + min(rank, r)
	hi = lo + q
	if rank < r {
		hi++
	}
	return lo, hi
}

// Batch returns the sample indices rank reads at cursor c of an epoch whose
// permutation is perm, and the cursor after this step (all ranks' samples
// counted). At the end of an epoch it returns no samples and the next epoch's
// start.
func (p Partition) Batch(perm []int, c Cursor) ([]int, Cursor) {
	n := len(perm)
	if c.Sample >= n {
		return nil, Cursor{Epoch: c.Epoch + 1}
	}
	end := min(c.Sample+p.GlobalBatch, n)
	batch := perm[c.Sample:end]
	if p.Pad && len(batch) < p.GlobalBatch {
		full := append([]int(nil), batch...)
		for i := 0; len(full) < p.GlobalBatch; i++ {
			full = append(full, perm[i%n])
		}
		batch = full
	}
	lo, hi := share(len(batch), p.Rank, p.World)
	return batch[lo:hi], Cursor{Epoch: c.Epoch, Sample: end}
}
