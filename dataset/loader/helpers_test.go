package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
)

// testStore is a real MinIO with an objstore client on it.
type testStore struct {
	minio *testenv.MinIO
	c     *objstore.Client
	warns *atomic.Int64 // objstore retry warnings logged
}

type countingHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}

func newStore(t *testing.T, mutate func(*objstore.Config)) *testStore {
	t.Helper()
	m := testenv.MinIOForTest(t)
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, "babelfish"
	if mutate != nil {
		mutate(&cfg)
	}
	warns := &atomic.Int64{}
	log := slog.New(countingHandler{Handler: slog.DiscardHandler, warns: warns})
	ctx := context.Background()
	c, err := objstore.New(ctx, cfg, objstore.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return &testStore{minio: m, c: c, warns: warns}
}

// shardSpec is one shard of a test dataset: its split and the number of
// utterances of each of its records.
type shardSpec struct {
	split string
	recs  []int
}

// fakeAudio is sample g's payload: its number, then a few bytes derived
// from it, so a test sees whether a sample carries its own audio.
func fakeAudio(g int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(g))
	for k := 0; k < 5+g%13; k++ {
		b = append(b, byte(g*31+k))
	}
	return b
}

// fakeLength is sample g's audio length, spread so bucketing matters.
func fakeLength(g int) int { return 1000 + (g*7919)%9000 }

// shardRecords makes the records of shard spec s whose first sample is g.
func shardRecords(name string, si int, s shardSpec, g int) []*shard.Record {
	var recs []*shard.Record
	for r, nu := range s.recs {
		rec := &shard.Record{Key: fmt.Sprintf("%s:%d:%d", name, si, r), Split: s.split}
		for u := 0; u < nu; u++ {
			rec.Utterances = append(rec.Utterances, shard.Utterance{
				Lang: []string{"en", "fr", "ja"}[u%3], Speaker: fmt.Sprintf("g%d", g),
				Samples: fakeLength(g), Audio: fakeAudio(g),
			})
			g++
		}
		recs = append(recs, rec)
	}
	return recs
}

func encode(t testing.TB, recs []*shard.Record) []byte {
	t.Helper()
	var data []byte
	for _, r := range recs {
		var err error
		if data, err = shard.AppendRecord(data, r); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// buildDataset writes a version straight through objstore (no synthesis):
// shards of records as specs say, then the manifest. tamper, if not nil,
// may change a shard's bytes before they are written (the manifest then
// commits to the changed bytes' sha256, as a buggy writer would).
func buildDataset(t *testing.T, st *testStore, name string, specs []shardSpec, tamper func(si int, data []byte) []byte) *dataset.Version {
	t.Helper()
	ctx := context.Background()
	w, err := st.c.NewArtifact(dataset.Prefix(name, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	m := &shard.Manifest{FormatVersion: shard.ManifestVersion, Name: name, Version: "v1",
		Audio: shard.AudioFormat{Container: "wav", Encoding: "pcm16", SampleRate: 16000, Channels: 1}}
	g := 0
	for si, s := range specs {
		recs := shardRecords(name, si, s, g)
		data := encode(t, recs)
		if tamper != nil {
			data = tamper(si, data)
		}
		key := fmt.Sprintf("shards/%05d", si)
		p, err := w.Put(ctx, key, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		nu := 0
		for _, n := range s.recs {
			nu += n
		}
		m.Shards = append(m.Shards, shard.ShardInfo{Key: key, Split: s.split, Bytes: p.Size, Records: len(s.recs), Utterances: nu, SHA256: p.SHA256})
		m.Records += len(s.recs)
		m.Utterances += nu
		g += nu
	}
	if _, err := w.Commit(ctx, m, objstore.Reproducible()); err != nil {
		t.Fatal(err)
	}
	v, err := dataset.Open(ctx, st.c, name, "v1")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// specs makes n shards of split with records of 1..5 utterances, uneven
// shard sizes.
func specs(n int, split string, seed int) []shardSpec {
	var out []shardSpec
	for i := 0; i < n; i++ {
		var recs []int
		for r := 0; r < 3+(i*5+seed)%6; r++ {
			recs = append(recs, 1+(i*3+r*7+seed)%5)
		}
		out = append(out, shardSpec{split: split, recs: recs})
	}
	return out
}

// indexesOf returns the samples of shards with the given split, by Index.
func indexesOf(m *shard.Manifest, split string) []int {
	var out []int
	g := 0
	for _, s := range m.Shards {
		for k := 0; k < s.Utterances; k++ {
			if split == "" || s.Split == split {
				out = append(out, g+k)
			}
		}
		g += s.Utterances
	}
	return out
}

// checkSample fails unless s carries sample s.Index's own utterance.
func checkSample(s Sample) error {
	u := s.Utterance()
	if u.Speaker != fmt.Sprintf("g%d", s.Index) || !bytes.Equal(u.Audio, fakeAudio(s.Index)) || u.Samples != fakeLength(s.Index) {
		return fmt.Errorf("sample %d (shard %s record %s utt %d) holds the utterance of %s", s.Index, s.Shard, s.Record.Key, s.Utt, u.Speaker)
	}
	return nil
}

// exactOnce reports every sample of want not seen exactly once in got, and
// any seen sample not in want.
func exactOnce(got, want []int) error {
	count := map[int]int{}
	for _, g := range got {
		count[g]++
	}
	var errs []string
	for _, w := range want {
		if count[w] != 1 {
			errs = append(errs, fmt.Sprintf("sample %d seen %d times", w, count[w]))
		}
		delete(count, w)
	}
	extra := make([]int, 0, len(count))
	for g := range count {
		extra = append(extra, g)
	}
	sort.Ints(extra)
	for _, g := range extra {
		errs = append(errs, fmt.Sprintf("sample %d is not in the set", g))
	}
	if len(errs) > 0 {
		if len(errs) > 8 {
			errs = append(errs[:8], fmt.Sprintf("and %d more", len(errs)-8))
		}
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// gstep is every rank's batch of one step.
type gstep []Batch

// global is the step's global batch: the ranks' shares in rank order.
func (g gstep) global() []int {
	var out []int
	for _, b := range g {
		for _, s := range b.Samples {
			out = append(out, s.Index)
		}
	}
	return out
}

// runRanks streams world ranks in lockstep for at most steps steps (until
// io.EOF when steps < 0) and returns each step's batches. Every batch's
// samples are checked against their content, and ranks must agree on the
// cursors.
func runRanks(t *testing.T, v *dataset.Version, world int, opts Options, steps int) []gstep {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	streams := make([]*Stream, world)
	for r := range streams {
		o := opts
		o.Partition.Rank, o.Partition.World = r, world
		s, err := New(ctx, v.Artifact, v.Manifest, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[r] = s
	}
	var out []gstep
	for k := 0; steps < 0 || k < steps; k++ {
		var g gstep
		for r, s := range streams {
			b, err := s.Next(ctx)
			if err == io.EOF {
				if r != 0 {
					t.Fatalf("step %d: rank %d ended, rank 0 did not", k, r)
				}
				for _, s := range streams[1:] {
					if _, err := s.Next(ctx); err != io.EOF {
						t.Fatalf("step %d: rank 0 ended, another rank got %v", k, err)
					}
				}
				return out
			}
			if err != nil {
				t.Fatalf("step %d rank %d: %v", k, r, err)
			}
			for _, smp := range b.Samples {
				if err := checkSample(smp); err != nil {
					t.Fatalf("step %d rank %d: %v", k, r, err)
				}
			}
			if r > 0 && (b.Start != g[0].Start || b.Cursor != g[0].Cursor) {
				t.Fatalf("step %d: rank %d at %+v -> %+v, rank 0 at %+v -> %+v", k, r, b.Start, b.Cursor, g[0].Start, g[0].Cursor)
			}
			g = append(g, b)
		}
		out = append(out, g)
	}
	return out
}

// byEpoch gathers the samples of every step by epoch.
func byEpoch(steps []gstep) map[int][]int {
	out := map[int][]int{}
	for _, g := range steps {
		out[g[0].Start.Epoch] = append(out[g[0].Start.Epoch], g.global()...)
	}
	return out
}

func globals(steps []gstep) [][]int {
	var out [][]int
	for _, g := range steps {
		out = append(out, g.global())
	}
	return out
}

func equalSteps(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}
