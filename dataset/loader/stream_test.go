package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/objstore"
)

// trainAndHeldOut is 7 train shards and 2 held-out ones; one record has
// no utterances (no samples).
func trainAndHeldOut() []shardSpec {
	s := specs(7, shard.SplitTrain, 0)
	s[1].recs = slices.Insert(s[1].recs, 1, 0)
	s = slices.Insert(s, 3, specs(1, shard.SplitUnseenPhrases, 1)...)
	return append(s, specs(1, shard.SplitUnseenPhrases, 2)...)
}

func TestExactOncePerEpoch(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "exact", trainAndHeldOut(), nil)
	train := indexesOf(v.Manifest, shard.SplitTrain)
	if len(train)%8 == 0 {
		t.Fatalf("%d train samples: pick shard sizes that leave a short last batch", len(train))
	}
	for world := 1; world <= 4; world++ {
		for _, bucket := range []int{0, 3} {
			t.Run(fmt.Sprintf("world%d/bucket%d", world, bucket), func(t *testing.T) {
				opts := Options{Seed: 11, BlockShards: 2, Partition: Partition{GlobalBatch: 8}, Splits: []string{shard.SplitTrain},
					Epochs: 2, BucketWindow: bucket}
				steps := runRanks(t, v, world, opts, -1)
				epochs := byEpoch(steps)
				if len(epochs) != 2 {
					t.Fatalf("%d epochs streamed, want 2", len(epochs))
				}
				for e, got := range epochs {
					if err := exactOnce(got, train); err != nil {
						t.Errorf("epoch %d: %v", e, err)
					}
				}
				if slices.Equal(epochs[0], epochs[1]) {
					t.Error("epochs 0 and 1 have the same order")
				}
				if want := 2 * ((len(train) + 7) / 8); len(steps) != want {
					t.Errorf("%d steps, want %d (every rank steps through every global batch)", len(steps), want)
				}
			})
		}
	}
}

// TestCheckerCatchesDropAndDuplicate shows the exact-once check can fail:
// padding duplicates samples, and a dropped sample is missed.
func TestCheckerCatchesDropAndDuplicate(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "checker", specs(3, shard.SplitTrain, 5), nil)
	all := indexesOf(v.Manifest, "")
	if len(all)%8 == 0 {
		t.Fatalf("%d samples divide into batches of 8: nothing to pad", len(all))
	}
	opts := Options{Seed: 3, Partition: Partition{GlobalBatch: 8}, Epochs: 1}
	good := byEpoch(runRanks(t, v, 3, opts, -1))[0]
	if err := exactOnce(good, all); err != nil {
		t.Fatalf("unpadded run: %v", err)
	}
	opts.Partition.Pad = true
	padded := byEpoch(runRanks(t, v, 3, opts, -1))[0]
	if err := exactOnce(padded, all); err == nil || !strings.Contains(err.Error(), "seen 2 times") {
		t.Errorf("padded run: checker said %v, want a duplicate", err)
	}
	if len(padded)%8 != 0 {
		t.Errorf("padded epoch has %d samples, want a multiple of the global batch", len(padded))
	}
	dropped := slices.Delete(slices.Clone(good), 5, 6)
	if err := exactOnce(dropped, all); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("sample %d seen 0 times", good[5])) {
		t.Errorf("dropped sample %d: checker said %v", good[5], err)
	}
}

func TestResumeEqualsUninterrupted(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "resume", specs(6, shard.SplitTrain, 1), nil)
	n := len(indexesOf(v.Manifest, ""))
	perEpoch := (n + 7) / 8
	maxShard := int64(0)
	for _, s := range v.Manifest.Shards {
		maxShard = max(maxShard, s.Bytes)
	}
	for _, tc := range []struct {
		name  string
		opts  Options
		stops []int
	}{
		{"plain", Options{BlockShards: 2}, []int{1, 5, perEpoch, perEpoch + 3}},
		{"bucketed", Options{BlockShards: 2, BucketWindow: 3}, []int{1, 4, perEpoch, perEpoch + 2}},
		// The epoch's last batch is padded from its start: the same samples
		// whether or not the stream went through the start's window.
		{"bucketed-pad", Options{BlockShards: 2, BucketWindow: 2, Partition: Partition{Pad: true}}, []int{perEpoch - 1, 2*perEpoch - 2}},
		{"tiny-cache", Options{BlockShards: 3, CacheBytes: maxShard, Prefetch: 1}, []int{2, perEpoch + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Seed, opts.Partition.GlobalBatch, opts.Epochs = 5, 8, 3
			ref := runRanks(t, v, 2, opts, -1)
			if len(ref) != 3*perEpoch {
				t.Fatalf("%d steps in 3 epochs, want %d", len(ref), 3*perEpoch)
			}
			for _, stop := range tc.stops {
				first := runRanks(t, v, 2, opts, stop)
				resumed := opts
				resumed.Cursor = first[len(first)-1][0].Cursor
				rest := runRanks(t, v, 2, resumed, -1)
				got := append(globals(first), globals(rest)...)
				if !equalSteps(got, globals(ref)) {
					t.Errorf("stopped after %d steps at %+v: the resumed sequence differs from the uninterrupted one", stop, resumed.Cursor)
				}
			}
		})
	}
}

func TestElasticResume(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "elastic", specs(6, shard.SplitTrain, 2), nil)
	for _, tc := range []struct {
		from, to, stop, bucket int
	}{
		{4, 2, 7, 0},
		{4, 2, 9, 4},
		{2, 3, 5, 0},
		{1, 4, 11, 2},
	} {
		t.Run(fmt.Sprintf("%dto%d/bucket%d", tc.from, tc.to, tc.bucket), func(t *testing.T) {
			opts := Options{Seed: 9, BlockShards: 2, Partition: Partition{GlobalBatch: 12}, Epochs: 2, BucketWindow: tc.bucket}
			ref := runRanks(t, v, tc.from, opts, -1)
			first := runRanks(t, v, tc.from, opts, tc.stop)
			resumed := opts
			resumed.Cursor = first[len(first)-1][0].Cursor
			rest := runRanks(t, v, tc.to, resumed, -1)
			if !equalSteps(globals(rest), globals(ref[tc.stop:])) {
				t.Errorf("world %d resumed at %+v does not continue world %d's global batches", tc.to, resumed.Cursor, tc.from)
			}
			for _, g := range rest {
				if len(g) != tc.to {
					t.Fatalf("step has %d shares, want %d", len(g), tc.to)
				}
			}
		})
	}
}

func TestLengthBucketing(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "bucket", specs(6, shard.SplitTrain, 3), nil)
	spread := func(steps []gstep) float64 {
		total, k := 0, 0
		for _, g := range steps {
			var ls []int
			for _, i := range g.global() {
				ls = append(ls, fakeLength(i))
			}
			if len(ls) == 8 {
				total += slices.Max(ls) - slices.Min(ls)
				k++
			}
		}
		return float64(total) / float64(k)
	}
	opts := Options{Seed: 1, BlockShards: 3, Partition: Partition{GlobalBatch: 8}, Epochs: 1}
	plain := spread(runRanks(t, v, 2, opts, -1))
	opts.BucketWindow = 8
	a := runRanks(t, v, 2, opts, -1)
	bucketed := spread(a)
	t.Logf("mean length range in a batch: %.0f plain, %.0f bucketed (window 8)", plain, bucketed)
	if bucketed > plain/3 {
		t.Errorf("bucketing left batches with a mean length range of %.0f samples, plain %.0f: want under a third", bucketed, plain)
	}
	if b := runRanks(t, v, 2, opts, -1); !equalSteps(globals(a), globals(b)) {
		t.Error("two bucketed runs with the same options differ")
	}
	opts.Seed = 2
	if b := runRanks(t, v, 2, opts, -1); equalSteps(globals(a), globals(b)) {
		t.Error("bucketed runs with seeds 1 and 2 are the same")
	}
}

// TestCorruptShard damages shard 2 of a dataset in two ways and checks
// both policies: Fail names the shard and offset, Skip drops exactly the
// shard's samples and counts them.
func TestCorruptShard(t *testing.T) {
	st := newStore(t, nil)
	spec := specs(4, shard.SplitTrain, 4)
	ctx := context.Background()

	// Overwritten behind objstore's back: the object no longer carries the
	// sha256 the manifest committed to.
	overwritten := buildDataset(t, st, "overwritten", spec, nil)
	raw, err := minio.New(st.minio.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(st.minio.AccessKey, st.minio.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("junk"), int(overwritten.Manifest.Shards[2].Bytes)/4+1)[:overwritten.Manifest.Shards[2].Bytes]
	if _, err := raw.PutObject(ctx, st.c.Bucket(), dataset.Prefix("overwritten", "v1")+"shards/00002", bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	// Written with a bad record: the sha256 matches, the CRC of record 2
	// does not.
	var badOffset int64
	badRecord := buildDataset(t, st, "badrecord", spec, func(si int, data []byte) []byte {
		if si != 2 {
			return data
		}
		rd := shard.NewReader("x", bytes.NewReader(data))
		for range 2 {
			if _, err := rd.Next(); err != nil {
				t.Fatal(err)
			}
		}
		badOffset = rd.Offset()
		data[badOffset+20] ^= 0xff
		return data
	})

	bad := overwritten.Manifest.Shards[2]
	all := indexesOf(overwritten.Manifest, "")
	var kept []int
	for _, i := range all {
		if i >= sum(spec[:2]) && i < sum(spec[:3]) {
			continue
		}
		kept = append(kept, i)
	}
	for _, tc := range []struct {
		name   string
		v      *dataset.Version
		offset int64
	}{
		{"checksum", overwritten, -1},
		{"record", badRecord, badOffset},
	} {
		t.Run(tc.name+"/fail", func(t *testing.T) {
			s, err := New(ctx, tc.v.Artifact, tc.v.Manifest, Options{Seed: 1, Partition: Partition{World: 1, GlobalBatch: 4}, Epochs: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var seen []int
			for {
				b, err := s.Next(ctx)
				if err == nil {
					for _, smp := range b.Samples {
						seen = append(seen, smp.Index)
					}
					continue
				}
				var se *ShardError
				if !errors.As(err, &se) || !errors.Is(err, ErrCorruptShard) {
					t.Fatalf("got %v, want a *ShardError", err)
				}
				if want := tc.v.Manifest.Name + "/v1/shards/00002"; se.Shard != want || se.Offset != tc.offset {
					t.Fatalf("error names shard %s offset %d, want %s offset %d: %v", se.Shard, se.Offset, want, tc.offset, err)
				}
				if !strings.Contains(err.Error(), "shards/00002") || (tc.offset >= 0 && !strings.Contains(err.Error(), fmt.Sprint(tc.offset))) {
					t.Fatalf("message %q does not name the shard and offset", err)
				}
				if _, again := s.Next(ctx); !errors.Is(again, ErrCorruptShard) {
					t.Fatalf("second Next after the error: %v, want the same error", again)
				}
				break
			}
			if err := exactOnce(seen, intersect(kept, seen)); err != nil {
				t.Errorf("batches before the error: %v", err)
			}
		})
		t.Run(tc.name+"/skip", func(t *testing.T) {
			reg := prometheus.NewRegistry()
			metrics, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{Seed: 2, BlockShards: 2, Partition: Partition{GlobalBatch: 6}, Epochs: 2, OnCorrupt: Skip, Metrics: metrics}
			steps := runRanks(t, tc.v, 2, opts, -1)
			skipped := 0
			for _, g := range steps {
				for _, b := range g {
					skipped += b.Skipped
				}
			}
			for e, got := range byEpoch(steps) {
				if err := exactOnce(got, kept); err != nil {
					t.Errorf("epoch %d: %v", e, err)
				}
			}
			if skipped != 2*bad.Utterances {
				t.Errorf("batches report %d skipped samples, want 2 epochs x %d", skipped, bad.Utterances)
			}
			if got := value(t, metrics.SkippedSamples); got != float64(2*bad.Utterances) {
				t.Errorf("skipped samples metric %v, want %d", got, 2*bad.Utterances)
			}
			if got := value(t, metrics.CorruptShards); got != 2 {
				t.Errorf("corrupt shards metric %v, want 2 (once per rank's stream)", got)
			}
			if got := value(t, metrics.CacheBytes); got != 0 {
				t.Errorf("cache bytes gauge %v after every stream closed, want 0", got)
			}
		})
	}
}

func sum(specs []shardSpec) int {
	n := 0
	for _, s := range specs {
		for _, r := range s.recs {
			n += r
		}
	}
	return n
}

func intersect(a, b []int) []int {
	var out []int
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func TestCacheBound(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "cache", specs(6, shard.SplitTrain, 6), nil)
	all := indexesOf(v.Manifest, "")
	var maxShard int64
	for _, s := range v.Manifest.Shards {
		maxShard = max(maxShard, s.Bytes)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		cache      int64
		wantFetch  func(n int64) bool
		wantEvicts bool
	}{
		// A block of 3 shards per step does not fit in 2: shards are
		// fetched again, and the bound still holds.
		{"two-shards", 2 * maxShard, func(n int64) bool { return n > 6 }, true},
		{"one-shard", maxShard, func(n int64) bool { return n > 6 }, true},
		// The default holds the whole dataset: each shard is fetched once.
		{"default", 0, func(n int64) bool { return n == 6 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(ctx, v.Artifact, v.Manifest, Options{Seed: 4, BlockShards: 3, CacheBytes: tc.cache,
				Partition: Partition{World: 1, GlobalBatch: 5}, Epochs: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []int
			for {
				b, err := s.Next(ctx)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, smp := range b.Samples {
					if err := checkSample(smp); err != nil {
						t.Fatal(err)
					}
					got = append(got, smp.Index)
				}
			}
			if err := exactOnce(got, all); err != nil {
				t.Fatal(err)
			}
			stats := s.Stats()
			limit := tc.cache
			if limit == 0 {
				limit = int64(2*3+DefaultPrefetch) * maxShard
			}
			if stats.PeakCacheBytes > limit || stats.PeakCacheBytes < maxShard {
				t.Errorf("peak cache %d bytes, limit %d", stats.PeakCacheBytes, limit)
			}
			if !tc.wantFetch(stats.ShardsFetched) || (stats.Evictions > 0) != tc.wantEvicts {
				t.Errorf("%d fetches, %d evictions for 6 shards", stats.ShardsFetched, stats.Evictions)
			}
			t.Logf("cache %d: peak %d, %d fetches, %d evictions", limit, stats.PeakCacheBytes, stats.ShardsFetched, stats.Evictions)
		})
	}
}

// TestStoreOutage stops MinIO mid-epoch: objstore's retries carry the
// stream over a short outage; a longer one than the retry budget is
// reported by Next, and the next call goes on.
func TestStoreOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name      string
		retries   int
		wantError bool
	}{
		{"retried", 12, false},
		{"reported", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t, func(c *objstore.Config) {
				c.MaxRetries, c.RetryBaseDelay, c.RetryMaxDelay = tc.retries, 100*time.Millisecond, time.Second
			})
			v := buildDataset(t, st, "outage", specs(10, shard.SplitTrain, 7), nil)
			var maxShard int64
			for _, s := range v.Manifest.Shards {
				maxShard = max(maxShard, s.Bytes)
			}
			// One shard at a time: a fetch is due every few steps.
			s, err := New(ctx, v.Artifact, v.Manifest, Options{Seed: 8, CacheBytes: maxShard, Prefetch: 1,
				Partition: Partition{World: 1, GlobalBatch: 3}, Epochs: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []int
			errs := 0
			for k := 0; ; k++ {
				if k == 4 {
					if err := st.minio.Shutdown(); err != nil {
						t.Fatal(err)
					}
					if tc.wantError {
						// Down past the budget: Next must say so.
						for errs == 0 {
							b, err := s.Next(ctx)
							if err == nil {
								for _, smp := range b.Samples {
									got = append(got, smp.Index)
								}
								continue
							}
							if errors.Is(err, ErrCorruptShard) {
								t.Fatalf("outage reported as corruption: %v", err)
							}
							errs++
						}
						if err := st.minio.Start(ctx); err != nil {
							t.Fatal(err)
						}
					} else {
						go func() {
							time.Sleep(2 * time.Second)
							if err := st.minio.Start(ctx); err != nil {
								t.Errorf("restart minio: %v", err)
							}
						}()
					}
				}
				b, err := s.Next(ctx)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("step %d: %v", k, err)
				}
				for _, smp := range b.Samples {
					if err := checkSample(smp); err != nil {
						t.Fatal(err)
					}
					got = append(got, smp.Index)
				}
			}
			if err := exactOnce(got, indexesOf(v.Manifest, "")); err != nil {
				t.Fatal(err)
			}
			if st.warns.Load() == 0 {
				t.Fatal("objstore logged no retry: the outage did not hit a fetch, so the test proved nothing")
			}
			if tc.wantError != (errs > 0) {
				t.Errorf("%d errors from Next during the outage, want error: %v", errs, tc.wantError)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "opts", specs(2, shard.SplitTrain, 0), nil)
	n := len(indexesOf(v.Manifest, ""))
	p := Partition{World: 1, GlobalBatch: 4}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"partition", Options{Partition: Partition{Rank: 2, World: 2, GlobalBatch: 4}}, "rank 2"},
		{"global batch", Options{Partition: Partition{World: 4, GlobalBatch: 2}}, "global batch 2"},
		{"split", Options{Partition: p, Splits: []string{"dev"}}, "no split dev (it has: train)"},
		{"cache", Options{Partition: p, CacheBytes: 10}, "cache bytes 10 is below the largest shard"},
		{"cursor", Options{Partition: p, Cursor: Cursor{Sample: n + 1}}, fmt.Sprintf("0 <= sample <= %d", n)},
		{"bucket cursor", Options{Partition: p, BucketWindow: 2, Cursor: Cursor{Sample: 3}}, "not a multiple of global batch 4"},
		{"prefetch", Options{Partition: p, Prefetch: 1000}, "prefetch 1000"},
		{"policy", Options{Partition: p, OnCorrupt: 7}, "corrupt policy 7"},
		{"block", Options{Partition: p, BlockShards: -1}, "block shards -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(context.Background(), v.Artifact, v.Manifest, tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("accepted %+v", tc.opts)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestSplitFilter streams only the held-out shards: Index still numbers
// the whole version.
func TestSplitFilter(t *testing.T) {
	st := newStore(t, nil)
	v := buildDataset(t, st, "splits", trainAndHeldOut(), nil)
	held := indexesOf(v.Manifest, shard.SplitUnseenPhrases)
	steps := runRanks(t, v, 2, Options{Partition: Partition{GlobalBatch: 4}, Splits: []string{shard.SplitUnseenPhrases}, Epochs: 1}, -1)
	if err := exactOnce(byEpoch(steps)[0], held); err != nil {
		t.Fatal(err)
	}
	for _, g := range steps {
		for _, b := range g {
			for _, s := range b.Samples {
				if s.Record.Split != shard.SplitUnseenPhrases {
					t.Fatalf("sample %d of split %s", s.Index, s.Record.Split)
				}
			}
		}
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}
