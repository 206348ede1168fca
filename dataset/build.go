package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"

	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/progress"
	"babelfish.dev/babelfish/objstore"
)

// Prefix is where a dataset version lives in the bucket.
func Prefix(name, version string) string { return "datasets/" + name + "/" + version + "/" }

// BuildInfo is the manifest's record of how a version was built.
type BuildInfo struct {
	Source string            `json:"source"` // "synthetic" or "import"
	Synth  *SynthSpec        `json:"synth,omitempty"`
	Import *ImportSpec       `json:"import,omitempty"`
	Tools  map[string]string `json:"tools,omitempty"` // e.g. espeak-ng version
	// Unspeakable lists the renderings ("<lang> <phrase id>") a synthetic
	// build left out because espeak-ng crashed on them every time.
	Unspeakable []string `json:"unspeakable,omitempty"`
}

// SynthBuild is everything a synthetic build needs.
type SynthBuild struct {
	Store   *objstore.Client
	Name    string
	Version string
	Spec    SynthSpec
	Espeak  corpus.Espeak
	CLDR    *corpus.CLDR
	// Workers bounds parallel synthesis; 0 means one per CPU.
	Workers int
	// Progress, if not nil, gets a progress bar.
	Progress io.Writer
	Log      *slog.Logger

	onShard func(key string) // test hook: called after each shard is stored
}

// BuildSynthetic builds (or resumes building) a synthetic dataset version.
// Shards already in the bucket from an interrupted run of the same spec are
// kept, not synthesized again; the manifest is written last, and the same
// spec with the same espeak-ng and CLDR gives a byte-identical manifest.
func BuildSynthetic(ctx context.Context, b SynthBuild) (*shard.Manifest, error) {
	if err := shard.ValidateName("dataset name", b.Name); err != nil {
		return nil, err
	}
	if err := shard.ValidateName("dataset version", b.Version); err != nil {
		return nil, err
	}
	if err := b.Spec.Validate(); err != nil {
		return nil, err
	}
	log := b.Log
	if log == nil {
		log = slog.Default()
	}
	prefix := Prefix(b.Name, b.Version)
	if _, err := b.Store.OpenArtifact(ctx, prefix); err == nil {
		return nil, fmt.Errorf("dataset %s/%s already exists and versions are immutable: pick another --version", b.Name, b.Version)
	} else if !errors.Is(err, objstore.ErrIncomplete) && !errors.Is(err, objstore.ErrNotFound) {
		return nil, err
	}
	workers := b.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	p, err := plan(ctx, b.Spec, b.Espeak, b.CLDR, workers)
	if err != nil {
		return nil, err
	}
	for _, u := range p.unspeakable {
		log.Warn("espeak-ng crashes on this phrase in this language every time; leaving it out", "rendering", u)
	}
	shards := p.shards(b.Spec)
	total := 0
	for _, s := range shards {
		for _, r := range s.records {
			total += len(r.utts)
		}
	}
	log.Info("building synthetic dataset", "name", b.Name, "version", b.Version,
		"languages", len(p.langs), "records", len(p.records), "utterances", total, "shards", len(shards))
	w, err := b.Store.NewArtifact(prefix)
	if err != nil {
		return nil, err
	}
	var bar *progress.Bar
	if b.Progress != nil {
		bar = progress.New(b.Progress, "synthesize", "utt", int64(total))
		defer bar.Done()
	}
	infos := make([]shard.ShardInfo, len(shards))
	stats := map[string]*shard.LanguageStats{}
	for i, s := range shards {
		key := fmt.Sprintf("shards/%05d", i)
		if part, ok, err := w.Adopt(ctx, key); err != nil {
			return nil, err
		} else if ok {
			// A shard from an interrupted build: its stats are in its part meta.
			var info shardMeta
			if err := json.Unmarshal(part.Meta, &info); err != nil || info.Records != len(s.records) {
				return nil, fmt.Errorf("dataset %s/%s: shard %s in the bucket does not match this spec (was the spec changed mid-build?): delete the version's prefix to start over", b.Name, b.Version, key)
			}
			infos[i] = shard.ShardInfo{Key: key, Split: s.split, Bytes: part.Size, Records: info.Records, Utterances: info.Utterances, SHA256: part.SHA256}
			info.addTo(stats)
			if bar != nil {
				bar.Add(int64(info.Utterances))
			}
			log.Debug("shard already built", "shard", key)
			continue
		}
		data, info, err := buildShard(ctx, b.Espeak, s, b.Spec.SampleRate, workers, bar)
		if err != nil {
			return nil, err
		}
		part, err := w.Put(ctx, key, data, info)
		if err != nil {
			return nil, err
		}
		infos[i] = shard.ShardInfo{Key: key, Split: s.split, Bytes: part.Size, Records: info.Records, Utterances: info.Utterances, SHA256: part.SHA256}
		info.addTo(stats)
		if b.onShard != nil {
			b.onShard(key)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	m := &shard.Manifest{
		FormatVersion: shard.ManifestVersion,
		Name:          b.Name,
		Version:       b.Version,
		Audio:         shard.AudioFormat{Container: "wav", Encoding: "pcm16", SampleRate: b.Spec.SampleRate, Channels: 1},
		Shards:        infos,
		Splits: shard.Splits{
			UnseenPhrases: b.Spec.UnseenPhrases,
			UnseenPairs:   b.Spec.UnseenPairs,
		},
	}
	for _, sp := range b.Spec.speakers() {
		for _, u := range b.Spec.UnseenVoices {
			if sp.Variant == u {
				m.Splits.UnseenVoices = append(m.Splits.UnseenVoices, sp.String())
			}
		}
	}
	for _, l := range p.langs {
		st := stats[l.Code]
		if st == nil {
			st = &shard.LanguageStats{Code: l.Code}
		}
		st.Voice, st.Locale, st.Phrases = l.Voice, l.Locale, p.phrases[l.Code]
		st.Seconds = round3(st.Seconds)
		m.Languages = append(m.Languages, *st)
	}
	for _, s := range infos {
		m.Records += s.Records
		m.Utterances += s.Utterances
	}
	for _, l := range m.Languages {
		m.Seconds += l.Seconds
	}
	m.Seconds = round3(m.Seconds)
	spec := b.Spec
	bi := BuildInfo{Source: "synthetic", Synth: &spec, Tools: map[string]string{"espeak-ng": b.Espeak.Version(ctx)}, Unspeakable: p.unspeakable}
	if m.Build, err = json.Marshal(bi); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if _, err := w.Commit(ctx, m, objstore.Reproducible()); err != nil {
		return nil, err
	}
	log.Info("dataset committed", "prefix", prefix, "records", m.Records, "utterances", m.Utterances, "hours", m.Seconds/3600)
	return m, nil
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// shardMeta is stored with each shard's part entry; it is what a resumed
// build needs to account for a shard without reading it.
type shardMeta struct {
	Records    int                    `json:"records"`
	Utterances int                    `json:"utterances"`
	Langs      map[string]langSeconds `json:"langs"`
}

type langSeconds struct {
	Utterances int     `json:"utterances"`
	Seconds    float64 `json:"seconds"`
}

func (s shardMeta) addTo(stats map[string]*shard.LanguageStats) {
	codes := make([]string, 0, len(s.Langs))
	for c := range s.Langs {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		st := stats[c]
		if st == nil {
			st = &shard.LanguageStats{Code: c}
			stats[c] = st
		}
		st.Utterances += s.Langs[c].Utterances
		st.Seconds += s.Langs[c].Seconds
	}
}

type plannedShard struct {
	split   string
	records []plannedRecord
}

// shards cuts the plan into shards of about spec.ShardBytes, from an
// estimate of each record's size, so the cut is known before any audio is
// made (a resumed build must find the same shards).
func (p *synthPlan) shards(spec SynthSpec) []plannedShard {
	const estSeconds = 1.2 // a spoken phrase, with espeak-ng's pauses
	bytesPerUtt := int64(estSeconds*float64(spec.SampleRate))*2 + 44
	var out []plannedShard
	var cur plannedShard
	var size int64
	for _, r := range p.records {
		est := int64(len(r.utts)) * bytesPerUtt
		if len(cur.records) > 0 && (cur.split != r.split || size+est > spec.ShardBytes) {
			out = append(out, cur)
			cur, size = plannedShard{}, 0
		}
		cur.split = r.split
		cur.records = append(cur.records, r)
		size += est
	}
	if len(cur.records) > 0 {
		out = append(out, cur)
	}
	return out
}

// buildShard synthesizes a shard's records with a pool of workers and
// encodes them in order.
func buildShard(ctx context.Context, es corpus.Espeak, s plannedShard, rate, workers int, bar *progress.Bar) ([]byte, shardMeta, error) {
	type job struct{ r, u int }
	recs := make([]shard.Record, len(s.records))
	var jobs []job
	for i, r := range s.records {
		recs[i] = shard.Record{Key: r.key, Split: r.split, Utterances: make([]shard.Utterance, len(r.utts))}
		for j := range r.utts {
			jobs = append(jobs, job{i, j})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	rs := newResamplers(workers)
	for _, jb := range jobs {
		g.Go(func() error {
			u, err := synthesize(gctx, es, s.records[jb.r].utts[jb.u], rate, rs)
			if err != nil {
				return err
			}
			recs[jb.r].Utterances[jb.u] = u
			if bar != nil {
				bar.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, shardMeta{}, err
	}
	meta := shardMeta{Records: len(recs), Langs: map[string]langSeconds{}}
	var data []byte
	for i := range recs {
		var err error
		if data, err = shard.AppendRecord(data, &recs[i]); err != nil {
			return nil, shardMeta{}, err
		}
		for _, u := range recs[i].Utterances {
			meta.Utterances++
			ls := meta.Langs[u.Lang]
			ls.Utterances++
			ls.Seconds = round3(ls.Seconds + u.Seconds)
			meta.Langs[u.Lang] = ls
		}
	}
	return data, meta, nil
}
