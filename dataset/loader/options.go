package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"babelfish.dev/babelfish/dataset/shard"
)

// Source is where a stream reads shards: a dataset version's artifact
// (*objstore.Artifact, as dataset.Open returns it), whose Get retries
// transient failures and checks each part against the sha256 its manifest
// committed to.
type Source interface {
	Get(ctx context.Context, part string) ([]byte, error)
}

// selfCheckedSource is a Source that can skip hashing a part whose content
// the loader checks itself: every shard byte is under a record's CRC-32C,
// so hashing the object as well would check each byte twice.
// *objstore.Artifact implements it.
type selfCheckedSource interface {
	GetSelfChecked(ctx context.Context, part string) ([]byte, error)
}

// CorruptPolicy says what a stream does with a corrupt shard.
type CorruptPolicy int

const (
	// Fail stops the stream: Next returns a *ShardError naming the shard
	// and the byte offset, and keeps returning it.
	Fail CorruptPolicy = iota
	// Skip drops the shard's samples, counts them (Stats, Metrics) and
	// goes on. Exact-once then holds for every other shard; the skipped
	// samples are missing from every epoch, not replaced.
	Skip
)

func (p CorruptPolicy) String() string {
	switch p {
	case Fail:
		return "fail"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("CorruptPolicy(%d)", int(p))
}

// DefaultPrefetch is how many shards a stream downloads at once when
// Options.Prefetch is 0.
const DefaultPrefetch = 2

// Limits on options, so a typo cannot ask for absurd concurrency.
const (
	MaxPrefetch     = 64
	maxPlanSteps    = 1 << 14 // steps planned ahead at most, whatever the cache
	defaultBlockMul = 2       // default cache: 2 blocks of shards (a step can straddle two) + prefetch
)

// Options configures a Stream. Seed, BlockShards, Splits, GlobalBatch and
// BucketWindow define the sample sequence: a cursor resumes it exactly only
// under the same values (Rank and World may change).
type Options struct {
	Seed uint64
	// BlockShards is how many shards' samples are mixed together (see
	// Order); 0 or 1 shuffles inside each shard only.
	BlockShards int
	Partition   Partition
	// Cursor is where to start: the zero value or a Batch.Cursor from a
	// checkpoint.
	Cursor Cursor
	// Splits keeps only shards of these splits (e.g. shard.SplitTrain);
	// empty keeps all. Samples are numbered over the kept shards for the
	// order, and Sample.Index over the whole version.
	Splits []string
	// Epochs ends the stream (io.EOF) when the cursor reaches this epoch;
	// 0 streams forever.
	Epochs int
	// BucketWindow turns on length bucketing: each window of this many
	// consecutive global batches is regrouped so every batch holds samples
	// of similar audio length (see the package doc); 0 turns it off.
	BucketWindow int
	// Prefetch is how many shards download at once, ahead of use;
	// 0 means DefaultPrefetch.
	Prefetch int
	// CacheBytes bounds the shards held in memory (decoded and
	// downloading), counted by their manifest size; it must hold the
	// largest shard. 0 means room for two blocks of the largest shard plus
	// Prefetch more.
	CacheBytes int64
	OnCorrupt  CorruptPolicy
	// Metrics, if not nil, is updated as the stream runs; several streams
	// may share one.
	Metrics *Metrics
	Log     *slog.Logger
}

// validate checks opts against the kept shards and fills in defaults.
func (o *Options) validate(m *shard.Manifest, kept []shard.ShardInfo, n int) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("loader: "+format, args...)) }
	if err := o.Partition.Validate(); err != nil {
		bad("partition: %v", err)
	}
	if o.BlockShards < 0 {
		bad("block shards %d: want >= 0", o.BlockShards)
	}
	if o.Epochs < 0 {
		bad("epochs %d: want >= 0 (0 streams forever)", o.Epochs)
	}
	if o.BucketWindow < 0 {
		bad("bucket window %d: want >= 0 global batches (0 turns bucketing off)", o.BucketWindow)
	}
	if o.Prefetch < 0 || o.Prefetch > MaxPrefetch {
		bad("prefetch %d: want 0..%d shards at once", o.Prefetch, MaxPrefetch)
	}
	if o.OnCorrupt != Fail && o.OnCorrupt != Skip {
		bad("corrupt policy %d: want Fail or Skip", int(o.OnCorrupt))
	}
	if o.Cursor.Epoch < 0 || o.Cursor.Sample < 0 || o.Cursor.Sample > n {
		bad("cursor %+v: want epoch >= 0 and 0 <= sample <= %d (the samples of one epoch)", o.Cursor, n)
	} else if o.BucketWindow > 0 && o.Partition.GlobalBatch > 0 && o.Cursor.Sample%o.Partition.GlobalBatch != 0 && o.Cursor.Sample != n {
		bad("cursor sample %d is not a multiple of global batch %d: a length-bucketed stream resumes only at a batch boundary", o.Cursor.Sample, o.Partition.GlobalBatch)
	}
	if n == 0 && len(errs) == 0 {
		bad("dataset %s/%s has no samples in splits %v", m.Name, m.Version, o.Splits)
	}
	var maxShard shard.ShardInfo
	for _, s := range kept {
		if s.Bytes > maxShard.Bytes {
			maxShard = s
		}
	}
	if o.Prefetch == 0 {
		o.Prefetch = DefaultPrefetch
	}
	switch {
	case o.CacheBytes < 0:
		bad("cache bytes %d: want >= 0 (0 picks a default)", o.CacheBytes)
	case o.CacheBytes == 0:
		o.CacheBytes = int64(defaultBlockMul*max(o.BlockShards, 1)+o.Prefetch) * max(maxShard.Bytes, 1)
	case o.CacheBytes < maxShard.Bytes:
		bad("cache bytes %d is below the largest shard (%s, %d bytes): the cache must hold one shard", o.CacheBytes, maxShard.Key, maxShard.Bytes)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// keepShards returns the manifest's shards of the wanted splits, in
// manifest order, with each one's first sample number in the version.
func keepShards(m *shard.Manifest, splits []string) ([]shard.ShardInfo, []int, error) {
	have := map[string]bool{}
	for _, s := range m.Shards {
		have[s.Split] = true
	}
	var missing []string
	for _, s := range splits {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(have))
		for s := range have {
			names = append(names, s)
		}
		slices.Sort(names)
		return nil, nil, fmt.Errorf("loader: dataset %s/%s has no split %s (it has: %s)", m.Name, m.Version,
			strings.Join(missing, ", "), strings.Join(names, ", "))
	}
	var kept []shard.ShardInfo
	var global []int
	g := 0
	for i, s := range m.Shards {
		if s.Utterances < 0 || s.Bytes < 0 {
			return nil, nil, fmt.Errorf("loader: dataset %s/%s shard %d (%s): negative size or utterance count", m.Name, m.Version, i, s.Key)
		}
		if len(splits) == 0 || slices.Contains(splits, s.Split) {
			kept = append(kept, s)
			global = append(global, g)
		}
		g += s.Utterances
	}
	return kept, global, nil
}
