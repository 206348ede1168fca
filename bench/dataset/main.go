package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench dataset:", err)
		os.Exit(1)
	}
}

type params struct {
	shards      int
	shardSize   int64
	uttSize     int
	uttsPerRec  int
	rounds      int
	prefetch    int
	blockShards int
	globalBatch int
}

func run() error {
	var p params
	flag.IntVar(&p.shards, "shards", 6, "shards in the loader's dataset")
	shardSize := flag.String("shard-size", "64MiB", "target shard size (bytes or KiB/MiB/GiB)")
	flag.IntVar(&p.uttSize, "utterance-size", 30<<10, "mean utterance size in bytes (each drawn from 0.5x to 1.5x)")
	flag.IntVar(&p.uttsPerRec, "utterances-per-record", 16, "utterances per record")
	flag.IntVar(&p.rounds, "rounds", 5, "measured rounds after one warm-up; the ratio is the median of the rounds' ratios")
	flag.IntVar(&p.prefetch, "prefetch", loader.DefaultPrefetch, "shards the loader downloads at once")
	flag.IntVar(&p.blockShards, "block-shards", 4, "shards mixed together by the loader's order")
	flag.IntVar(&p.globalBatch, "global-batch", 256, "samples per step")
	only := flag.String("only", "loader,corpus", "comma-separated parts to run: loader, corpus")
	corpusLangs := flag.String("corpus-languages", "de,en,es,fr,ja,ru,hi,sw", "languages of the corpus-rate build")
	fullCorpus := flag.Bool("full-corpus", false, "also build the default corpus of every language (long: hours on 2 cores)")
	dataDir := flag.String("data-dir", "", "MinIO data directory (default: a temporary one)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the loader rounds to this file")
	corpusProfile := flag.String("corpus-cpuprofile", "", "write a CPU profile of the corpus build (this process only, not espeak-ng) to this file")
	flag.Parse()
	var err error
	if p.shardSize, err = parseSize(*shardSize); err != nil {
		return fmt.Errorf("-shard-size: %w", err)
	}
	if p.shards < 1 || p.shardSize < 1<<20 || p.uttSize < 1024 || p.uttsPerRec < 1 || p.rounds < 1 || p.globalBatch < 1 {
		return fmt.Errorf("-shards, -rounds, -utterances-per-record, -global-batch must be >= 1, -shard-size >= 1MiB, -utterance-size >= 1024")
	}
	parts := strings.Split(*only, ",")

	ctx := context.Background()
	var opts []testenv.MinIOOption
	if *dataDir != "" {
		opts = append(opts, testenv.WithMinIODataDir(*dataDir))
	}
	srv, err := testenv.StartMinIO(ctx, opts...)
	if err != nil {
		return err
	}
	defer srv.Stop()
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.Bucket = srv.Endpoint, "bench"
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := objstore.New(ctx, cfg, objstore.WithLogger(log))
	if err != nil {
		return err
	}
	if err := store.EnsureBucket(ctx); err != nil {
		return err
	}

	if slices.Contains(parts, "loader") {
		if err := benchLoader(ctx, p, srv, store, cfg.Bucket, *cpuProfile); err != nil {
			return err
		}
	}
	if slices.Contains(parts, "corpus") {
		if *corpusProfile != "" {
			f, err := os.Create(*corpusProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		if err := benchCorpus(ctx, store, strings.Split(*corpusLangs, ","), log); err != nil {
			return err
		}
	}
	if *fullCorpus {
		if err := benchFullCorpus(ctx, store, log); err != nil {
			return err
		}
	}
	return nil
}

// buildShards writes a version of p.shards shards of synthetic records:
// random payloads of realistic sizes, not speech (the loader does not look
// inside the audio).
func buildShards(ctx context.Context, p params, store *objstore.Client) (*dataset.Version, error) {
	w, err := store.NewArtifact(dataset.Prefix("bench", "v1"))
	if err != nil {
		return nil, err
	}
	m := &shard.Manifest{FormatVersion: shard.ManifestVersion, Name: "bench", Version: "v1",
		Audio: shard.AudioFormat{Container: "wav", Encoding: "pcm16", SampleRate: 16000, Channels: 1}}
	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, 2*p.uttSize)
	for i := 0; i < len(payload); i += 8 {
		binary.LittleEndian.PutUint64(payload[i:], rng.Uint64())
	}
	for si := 0; si < p.shards; si++ {
		data := make([]byte, 0, p.shardSize+int64(4*p.uttsPerRec*p.uttSize))
		info := shard.ShardInfo{Key: fmt.Sprintf("shards/%05d", si), Split: shard.SplitTrain}
		for int64(len(data)) < p.shardSize {
			rec := &shard.Record{Key: fmt.Sprintf("phrase:%d:%d", si, info.Records), Split: shard.SplitTrain}
			for u := 0; u < p.uttsPerRec; u++ {
				size := p.uttSize/2 + rng.IntN(p.uttSize)
				off := rng.IntN(len(payload) - size)
				rec.Utterances = append(rec.Utterances, shard.Utterance{
					Lang: fmt.Sprintf("l%02d", u), Speaker: fmt.Sprintf("v%d", u%4), Samples: (size - 44) / 2,
					Audio: payload[off : off+size],
				})
			}
			if data, err = shard.AppendRecord(data, rec); err != nil {
				return nil, err
			}
			info.Records++
			info.Utterances += len(rec.Utterances)
		}
		part, err := w.Put(ctx, info.Key, data, nil)
		if err != nil {
			return nil, err
		}
		info.Bytes, info.SHA256 = part.Size, part.SHA256
		m.Shards = append(m.Shards, info)
		m.Records += info.Records
		m.Utterances += info.Utterances
	}
	if _, err := w.Commit(ctx, m, objstore.Reproducible()); err != nil {
		return nil, err
	}
	return dataset.Open(ctx, store, "bench", "v1")
}

type result struct {
	elapsed              time.Duration
	bytes                int64
	records, utterances  int
	clientCPU, serverCPU float64
}

func benchLoader(ctx context.Context, p params, srv *testenv.MinIO, store *objstore.Client, bucket, cpuProfile string) error {
	t0 := time.Now()
	v, err := buildShards(ctx, p, store)
	if err != nil {
		return err
	}
	var total int64
	for _, s := range v.Manifest.Shards {
		total += s.Bytes
	}
	fmt.Printf("bench dataset config shards=%d bytes=%d records=%d utterances=%d prefetch=%d block_shards=%d global_batch=%d rounds=%d cores=%d built_in=%.1fs\n",
		len(v.Manifest.Shards), total, v.Manifest.Records, v.Manifest.Utterances, p.prefetch, p.blockShards, p.globalBatch, p.rounds,
		runtime.NumCPU(), time.Since(t0).Seconds())

	raw, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		return err
	}
	sides := map[string]func() (result, error){
		"loader": func() (result, error) { return runLoader(ctx, p, v) },
		"raw":    func() (result, error) { return runRaw(ctx, raw, bucket, v) },
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var ratios []float64
	res := map[string][]result{}
	for round := 0; round <= p.rounds; round++ { // round 0 warms up
		order := []string{"loader", "raw"}
		if round%2 == 1 {
			order = []string{"raw", "loader"}
		}
		mbps := map[string]float64{}
		for _, name := range order {
			cpu0, srv0 := selfCPU(), procCPU(srv.PID())
			r, err := sides[name]()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			r.clientCPU, r.serverCPU = selfCPU()-cpu0, procCPU(srv.PID())-srv0
			if r.bytes != total {
				return fmt.Errorf("%s read %d bytes, the shards hold %d", name, r.bytes, total)
			}
			mbps[name] = float64(r.bytes) / 1e6 / r.elapsed.Seconds()
			if round > 0 {
				res[name] = append(res[name], r)
			}
		}
		if round > 0 {
			ratios = append(ratios, mbps["loader"]/mbps["raw"])
		}
		fmt.Printf("bench dataset round=%d loader_MBps=%.1f raw_MBps=%.1f ratio=%.3f\n", round, mbps["loader"], mbps["raw"], mbps["loader"]/mbps["raw"])
	}
	med := func(name string, f func(r result) float64) float64 {
		var xs []float64
		for _, r := range res[name] {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	perSec := func(x func(r result) float64) func(r result) float64 {
		return func(r result) float64 { return x(r) / r.elapsed.Seconds() }
	}
	mb := perSec(func(r result) float64 { return float64(r.bytes) / 1e6 })
	fmt.Printf("bench dataset cpu_s_per_epoch loader_client=%.3f loader_minio=%.3f raw_client=%.3f raw_minio=%.3f\n",
		med("loader", func(r result) float64 { return r.clientCPU }), med("loader", func(r result) float64 { return r.serverCPU }),
		med("raw", func(r result) float64 { return r.clientCPU }), med("raw", func(r result) float64 { return r.serverCPU }))
	fmt.Printf("bench dataset ratio_loader=%.3f loader_MBps=%.1f raw_MBps=%.1f records_per_s=%.0f utterances_per_s=%.0f ratios=%s\n",
		median(ratios), med("loader", mb), med("raw", mb),
		med("loader", perSec(func(r result) float64 { return float64(r.records) })),
		med("loader", perSec(func(r result) float64 { return float64(r.utterances) })), list(ratios))
	return nil
}

// runLoader streams one epoch to one rank, as a trainer would: every
// sample's utterance is touched.
func runLoader(ctx context.Context, p params, v *dataset.Version) (result, error) {
	start := time.Now()
	s, err := loader.New(ctx, v.Artifact, v.Manifest, loader.Options{Seed: 1, BlockShards: p.blockShards,
		Partition: loader.Partition{World: 1, GlobalBatch: p.globalBatch}, Epochs: 1, Prefetch: p.prefetch})
	if err != nil {
		return result{}, err
	}
	defer s.Close()
	records := map[*shard.Record]bool{}
	var r result
	var sum byte
	for {
		b, err := s.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return result{}, err
		}
		for _, smp := range b.Samples {
			records[smp.Record] = true
			a := smp.Utterance().Audio
			sum += a[len(a)-1]
			r.utterances++
		}
	}
	r.elapsed = time.Since(start)
	r.records = len(records)
	r.bytes = s.Stats().BytesFetched
	if st := s.Stats(); st.ShardsFetched != int64(len(v.Manifest.Shards)) {
		return result{}, fmt.Errorf("loader fetched %d shards for %d (cache too small?)", st.ShardsFetched, len(v.Manifest.Shards))
	}
	_ = sum
	return r, nil
}

// runRaw reads every shard with plain minio-go, one after another, into
// a buffer of its size: the floor a loader can hope to match.
func runRaw(ctx context.Context, c *minio.Client, bucket string, v *dataset.Version) (result, error) {
	start := time.Now()
	var r result
	for _, s := range v.Manifest.Shards {
		obj, err := c.GetObject(ctx, bucket, v.Artifact.Prefix()+s.Key, minio.GetObjectOptions{})
		if err != nil {
			return result{}, err
		}
		buf := make([]byte, s.Bytes)
		n, err := io.ReadFull(obj, buf)
		obj.Close()
		if err != nil {
			return result{}, err
		}
		r.bytes += int64(n)
		r.records += s.Records
		r.utterances += s.Utterances
	}
	r.elapsed = time.Since(start)
	return r, nil
}

func espeakAndCLDR() (corpus.Espeak, *corpus.CLDR, error) {
	bin, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		return corpus.Espeak{}, nil, err
	}
	cldr, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		return corpus.Espeak{}, nil, err
	}
	return corpus.Espeak{Path: bin}, cldr, nil
}

// benchCorpus builds a small real corpus with every core and reports
// utterances per second per core (synthesis, resampling, shard encoding
// and upload included).
func benchCorpus(ctx context.Context, store *objstore.Client, langs []string, log *slog.Logger) error {
	es, cldr, err := espeakAndCLDR()
	if err != nil {
		return err
	}
	spec := dataset.DefaultSynthSpec()
	spec.Languages = langs
	spec.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers, corpus.Days}, NumberMax: 9}
	spec.Variants, spec.UnseenVoices = []string{"m1", "f1", "m3"}, []string{"m3"}
	spec.Speeds, spec.Pitches = []int{150, 180}, []int{50}
	spec.UnseenPhrases = []string{corpus.NumberID(7)}
	workers := runtime.NumCPU()
	start := time.Now()
	cpu0 := selfCPU() + childCPU()
	m, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{Store: store, Name: "corpus-rate", Version: strconv.FormatInt(time.Now().UnixNano(), 36), Spec: spec,
		Espeak: es, CLDR: cldr, Workers: workers, Log: log})
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	cpu := selfCPU() + childCPU() - cpu0
	rate := float64(m.Utterances) / el / float64(workers)
	fmt.Printf("bench dataset-corpus-rate utterances_per_s_per_core=%.1f utterances=%d languages=%d seconds=%.1f cores=%d cpu_s=%.1f utterances_per_cpu_s=%.1f audio_s_per_s=%.1f\n",
		rate, m.Utterances, len(m.Languages), el, workers, cpu, float64(m.Utterances)/cpu, m.Seconds/el)

	// What the full default corpus would be, counted from espeak-ng's
	// voices and CLDR without synthesizing it.
	full := dataset.DefaultSynthSpec()
	voices, err := es.Voices(ctx)
	if err != nil {
		return err
	}
	covered := corpus.MatchLanguages(voices, cldr)
	ids := map[string]bool{}
	renderings := 0
	for _, l := range covered {
		loc, err := cldr.Locale(l.Locale)
		if err != nil {
			return err
		}
		for _, ph := range corpus.Phrases(l.Code, loc, full.Phrases) {
			ids[ph.ID] = true
			renderings++
		}
	}
	utts := renderings * (len(full.Variants)*len(full.Speeds)*len(full.Pitches) + 1)
	fmt.Printf("bench dataset-corpus-plan languages=%d phrases=%d utterances=%d est_hours=%.1f est_build_min=%.0f (counted, not built; hours from this run's mean utterance length, minutes at this run's rate on %d cores)\n",
		len(covered), len(ids), utts, float64(utts)*m.Seconds/float64(m.Utterances)/3600, float64(utts)/rate/float64(workers)/60, workers)
	return nil
}

func benchFullCorpus(ctx context.Context, store *objstore.Client, log *slog.Logger) error {
	es, cldr, err := espeakAndCLDR()
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{Store: store, Name: "corpus", Version: "v1", Spec: dataset.DefaultSynthSpec(),
		Espeak: es, CLDR: cldr, Progress: os.Stderr, Log: log})
	if err != nil {
		return err
	}
	var total int64
	renderings := 0
	for _, s := range m.Shards {
		total += s.Bytes
	}
	for _, l := range m.Languages {
		renderings += l.Phrases
	}
	fmt.Printf("bench dataset-corpus languages=%d phrases=%d utterances=%d hours=%.2f shards=%d bytes=%d phrase_renderings=%d build_s=%.0f cores=%d\n",
		len(m.Languages), m.Records, m.Utterances, m.Seconds/3600, len(m.Shards), total, renderings, time.Since(start).Seconds(), runtime.NumCPU())
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func list(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 3, 64)
	}
	return strings.Join(parts, ",")
}

func rusageCPU(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// selfCPU is this process's CPU seconds so far.
func selfCPU() float64 { return rusageCPU(syscall.RUSAGE_SELF) }

// childCPU is the CPU seconds of finished children (espeak-ng runs).
func childCPU() float64 { return rusageCPU(syscall.RUSAGE_CHILDREN) }

// procCPU reads another process's CPU seconds (utime + stime) from /proc;
// 0 where that is not available.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks; 100 Hz on Linux
}

func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 67108864 or 64MiB", v)
	}
	return n * mult, nil
}
