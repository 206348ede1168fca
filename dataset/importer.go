package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/objstore"
)

// ImportSpec describes a real corpus laid out CVSS-style: WAV files and a
// TSV manifest with the columns id, source language, source wav, target
// language, target wav (paths relative to the manifest). Rows that share an
// id are one phrase and become one record.
type ImportSpec struct {
	// Manifest is the TSV's path: in a local directory, or an object key
	// when the corpus is in the bucket.
	Manifest   string `json:"manifest"`
	FromBucket bool   `json:"from_bucket,omitempty"`
	SampleRate int    `json:"sample_rate"`
	ShardBytes int64  `json:"shard_bytes"`
	// MaxSeconds rejects longer utterances (a misaligned corpus often has a
	// few huge files).
	MaxSeconds float64 `json:"max_seconds"`
}

// Import builds a dataset version from a real corpus.
type Import struct {
	Store   *objstore.Client
	Name    string
	Version string
	Spec    ImportSpec
	// Files reads the corpus when it is on local disk (e.g. os.DirFS of the
	// manifest's directory); nil when Spec.FromBucket.
	Files fs.FS
	Log   *slog.Logger
}

type importRow struct {
	line                                 int
	id, srcLang, srcWav, tgtLang, tgtWav string
}

func parseImportTSV(r io.Reader) ([]importRow, error) {
	var rows []importRow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimRight(sc.Text(), "\r")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Split(t, "\t")
		if line == 1 && len(f) == 5 && strings.EqualFold(f[0], "id") {
			continue // header
		}
		if len(f) != 5 {
			return nil, fmt.Errorf("import manifest line %d: %d columns, want 5 (id, source language, source wav, target language, target wav) separated by tabs", line, len(f))
		}
		for i, name := range []string{"id", "source language", "source wav", "target language", "target wav"} {
			if strings.TrimSpace(f[i]) == "" {
				return nil, fmt.Errorf("import manifest line %d: column %d (%s) is empty", line, i+1, name)
			}
		}
		rows = append(rows, importRow{line, f[0], f[1], f[2], f[3], f[4]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("import manifest: %w", err)
	}
	if len(rows) == 0 {
		return nil, errors.New("import manifest: no rows")
	}
	return rows, nil
}

// BuildImport builds a dataset version from a CVSS-style corpus.
func BuildImport(ctx context.Context, im Import) (*shard.Manifest, error) {
	if err := shard.ValidateName("dataset name", im.Name); err != nil {
		return nil, err
	}
	if err := shard.ValidateName("dataset version", im.Version); err != nil {
		return nil, err
	}
	spec := im.Spec
	if spec.SampleRate == 0 {
		spec.SampleRate = 16000
	}
	if spec.ShardBytes == 0 {
		spec.ShardBytes = 64 << 20
	}
	if spec.MaxSeconds == 0 {
		spec.MaxSeconds = 60
	}
	log := im.Log
	if log == nil {
		log = slog.Default()
	}
	read := func(name string) ([]byte, error) {
		if spec.FromBucket {
			return im.Store.GetUnverified(ctx, name)
		}
		if im.Files == nil {
			return nil, errors.New("import: no local files given and the corpus is not in the bucket")
		}
		return fs.ReadFile(im.Files, name)
	}
	tsv, err := read(spec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("import manifest %s: %w", spec.Manifest, err)
	}
	rows, err := parseImportTSV(bytes.NewReader(tsv))
	if err != nil {
		return nil, err
	}
	base := path.Dir(spec.Manifest)
	if !spec.FromBucket {
		base = "."
	}
	lim := audio.Limits{MaxSeconds: spec.MaxSeconds, MinRate: 4000, MaxRate: 192000, MaxChannels: 16}
	load := func(line int, lang, file string, canon bool) (shard.Utterance, error) {
		b, err := read(path.Join(base, file))
		if err != nil {
			return shard.Utterance{}, fmt.Errorf("import manifest line %d: %s: %w", line, file, err)
		}
		clip, err := audio.DecodeWAV(b, lim)
		if err != nil {
			return shard.Utterance{}, fmt.Errorf("import manifest line %d: %s: %w", line, file, err)
		}
		if clip, err = audio.Resample(clip, spec.SampleRate); err != nil {
			return shard.Utterance{}, err
		}
		out, err := audio.EncodeWAV(clip, audio.PCM16)
		if err != nil {
			return shard.Utterance{}, err
		}
		sp := "import"
		if canon {
			sp = CanonSpeaker
		}
		return shard.Utterance{Lang: lang, Speaker: sp, Canon: canon, Samples: len(clip.Samples),
			Seconds: clip.Seconds(), Source: file, Audio: out}, nil
	}
	byID := map[string]*shard.Record{}
	seen := map[string]bool{}
	var order []string
	for _, r := range rows {
		rec := byID[r.id]
		if rec == nil {
			rec = &shard.Record{Key: r.id, Split: shard.SplitTrain}
			byID[r.id] = rec
			order = append(order, r.id)
		}
		for _, u := range []struct {
			lang, file string
			canon      bool
		}{{r.srcLang, r.srcWav, false}, {r.tgtLang, r.tgtWav, true}} {
			k := r.id + "\x00" + u.file
			if seen[k] {
				continue
			}
			seen[k] = true
			utt, err := load(r.line, u.lang, u.file, u.canon)
			if err != nil {
				return nil, err
			}
			rec.Utterances = append(rec.Utterances, utt)
		}
	}
	sort.Strings(order)
	prefix := Prefix(im.Name, im.Version)
	w, err := im.Store.NewArtifact(prefix)
	if err != nil {
		return nil, err
	}
	m := &shard.Manifest{FormatVersion: shard.ManifestVersion, Name: im.Name, Version: im.Version,
		Audio: shard.AudioFormat{Container: "wav", Encoding: "pcm16", SampleRate: spec.SampleRate, Channels: 1}}
	stats := map[string]*shard.LanguageStats{}
	phrases := map[string]map[string]bool{}
	var buf []byte
	var meta shardMeta
	flush := func() error {
		if meta.Records == 0 {
			return nil
		}
		key := fmt.Sprintf("shards/%05d", len(m.Shards))
		part, err := w.Put(ctx, key, buf, meta)
		if err != nil {
			return err
		}
		m.Shards = append(m.Shards, shard.ShardInfo{Key: key, Split: shard.SplitTrain, Bytes: part.Size,
			Records: meta.Records, Utterances: meta.Utterances, SHA256: part.SHA256})
		meta.addTo(stats)
		buf, meta = nil, shardMeta{}
		return nil
	}
	for _, id := range order {
		rec := byID[id]
		if buf, err = shard.AppendRecord(buf, rec); err != nil {
			return nil, err
		}
		if meta.Langs == nil {
			meta.Langs = map[string]langSeconds{}
		}
		meta.Records++
		for _, u := range rec.Utterances {
			meta.Utterances++
			ls := meta.Langs[u.Lang]
			ls.Utterances++
			ls.Seconds = round3(ls.Seconds + u.Seconds)
			meta.Langs[u.Lang] = ls
			if phrases[u.Lang] == nil {
				phrases[u.Lang] = map[string]bool{}
			}
			phrases[u.Lang][id] = true
		}
		if int64(len(buf)) >= spec.ShardBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	codes := make([]string, 0, len(stats))
	for c := range stats {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		st := *stats[c]
		st.Phrases = len(phrases[c])
		st.Seconds = round3(st.Seconds)
		m.Languages = append(m.Languages, st)
		m.Seconds += st.Seconds
	}
	m.Seconds = round3(m.Seconds)
	for _, s := range m.Shards {
		m.Records += s.Records
		m.Utterances += s.Utterances
	}
	if m.Build, err = json.Marshal(BuildInfo{Source: "import", Import: &spec}); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if _, err := w.Commit(ctx, m); err != nil {
		return nil, err
	}
	log.Info("dataset imported", "prefix", prefix, "records", m.Records, "utterances", m.Utterances)
	return m, nil
}
