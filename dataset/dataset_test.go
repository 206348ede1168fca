package dataset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
)

func newStore(t *testing.T) *objstore.Client {
	t.Helper()
	m := testenv.MinIOForTest(t)
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = m.Endpoint, m.AccessKey, m.SecretKey, "babelfish"
	ctx := context.Background()
	c, err := objstore.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func espeak(t *testing.T) corpus.Espeak {
	t.Helper()
	p, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	return corpus.Espeak{Path: p}
}

func cldr(t *testing.T) *corpus.CLDR {
	t.Helper()
	c, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tinySpec is a real espeak-ng corpus small enough for a unit test:
// 5 languages, 7 phrases, 3 voices, shards of about 1 MiB.
func tinySpec() SynthSpec {
	s := DefaultSynthSpec()
	s.Languages = []string{"de", "en", "es", "fr", "ja"}
	s.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers, corpus.RelativeDay}, NumberMax: 3}
	s.Variants = []string{"m1", "f1", "m7"}
	s.UnseenVoices = []string{"m7"}
	s.Speeds = []int{170}
	s.Pitches = []int{50}
	s.UnseenPhrases = []string{corpus.NumberID(3)}
	s.UnseenPairs = [][2]string{{"de", "ja"}}
	s.ShardBytes = 1 << 20
	return s
}

func readManifest(t *testing.T, store *objstore.Client, name, version string) []byte {
	t.Helper()
	b, _, err := store.Get(context.Background(), Prefix(name, version)+objstore.ManifestName)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSyntheticBuildOfFiveLanguages(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	b := SynthBuild{Store: store, Name: "tiny", Version: "v1", Spec: tinySpec(), Espeak: espeak(t), CLDR: cldr(t)}
	m, err := BuildSynthetic(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	// 5 languages x 7 phrases x (3 voices + canon) utterances.
	if len(m.Languages) != 5 || m.Records != 7 || m.Utterances != 5*7*4 {
		t.Errorf("manifest: %d languages, %d records, %d utterances; want 5, 7, 140", len(m.Languages), m.Records, m.Utterances)
	}
	if len(m.Shards) < 2 {
		t.Errorf("%d shards, want >= 2 (train and unseen phrases are separate)", len(m.Shards))
	}
	if want := []string{"m7/s170/p50"}; len(m.Splits.UnseenVoices) != 1 || m.Splits.UnseenVoices[0] != want[0] {
		t.Errorf("unseen voices %v, want %v", m.Splits.UnseenVoices, want)
	}
	v, err := Open(ctx, store, "tiny", "v1")
	if err != nil {
		t.Fatal(err)
	}
	// Every record holds every language, canon included, and its audio is
	// real speech at the manifest's rate.
	canon := 0
	for _, si := range v.Manifest.Shards {
		data, err := v.Artifact.Get(ctx, si.Key)
		if err != nil {
			t.Fatal(err)
		}
		rd := shard.NewReader(si.Key, bytes.NewReader(data))
		for {
			r, err := rd.Next()
			if err != nil {
				break
			}
			if (r.Key == corpus.NumberID(3)) != (r.Split == shard.SplitUnseenPhrases) || r.Split != si.Split {
				t.Errorf("record %s is in split %s (shard split %s)", r.Key, r.Split, si.Split)
			}
			for _, u := range r.Utterances {
				clip, err := audio.DecodeWAV(u.Audio, audio.Limits{})
				if err != nil {
					t.Fatalf("%s %s %s: %v", r.Key, u.Lang, u.Speaker, err)
				}
				if clip.Rate != 16000 || clip.Seconds() < 0.2 || audio.RMS(clip.Samples) < 0.01 {
					t.Errorf("%s %s %s: %d Hz, %.2f s, rms %.3f: not speech", r.Key, u.Lang, u.Speaker, clip.Rate, clip.Seconds(), audio.RMS(clip.Samples))
				}
				if u.Canon {
					canon++
				}
			}
		}
	}
	if canon != 5*7 {
		t.Errorf("%d canonical utterances, want one per language and phrase (35)", canon)
	}
	if err := v.CheckLanguages([]string{"fr", "xx"}); err == nil || !strings.Contains(err.Error(), "xx") || !strings.Contains(err.Error(), "ja") {
		t.Errorf("CheckLanguages(xx) = %v, want an error naming xx and listing the languages", err)
	}
	// Versions are immutable.
	if _, err := BuildSynthetic(ctx, b); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("building v1 twice: %v, want an immutability error", err)
	}
}

// TestBuildResumesAndIsDeterministic interrupts a build after its first
// shard, resumes it, and checks the manifest is byte-identical to an
// uninterrupted build of the same spec.
func TestBuildResumesAndIsDeterministic(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	spec := tinySpec()
	spec.Languages = []string{"fr", "de"}
	spec.UnseenPairs = [][2]string{{"fr", "de"}}
	spec.ShardBytes = 1 << 20
	spec.Phrases.NumberMax = 9
	b := SynthBuild{Store: store, Name: "det", Version: "v1", Spec: spec, Espeak: espeak(t), CLDR: cldr(t), Workers: 2}
	if _, err := BuildSynthetic(ctx, b); err != nil {
		t.Fatal(err)
	}
	straight := readManifest(t, store, "det", "v1")
	if _, err := store.DeletePrefix(ctx, Prefix("det", "v1")); err != nil {
		t.Fatal(err)
	}

	// Interrupt: cancel as soon as the first shard is in the bucket.
	ictx, cancel := context.WithCancel(ctx)
	b.onShard = func(string) { cancel() }
	_, err := BuildSynthetic(ictx, b)
	if err == nil {
		t.Fatal("interrupted build succeeded")
	}
	objs, err := store.List(ctx, Prefix("det", "v1")+"shards/", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("the interrupted build left no shard to resume from")
	}
	if _, err := Open(ctx, store, "det", "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("half-built version is visible: %v", err)
	}
	b.onShard = nil
	if _, err := BuildSynthetic(ctx, b); err != nil {
		t.Fatal(err)
	}
	if resumed := readManifest(t, store, "det", "v1"); !bytes.Equal(straight, resumed) {
		t.Errorf("resumed build's manifest differs from the uninterrupted one:\n%s\n---\n%s", straight, resumed)
	}
}

func TestOpenErrorsListWhatExists(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	if _, err := Open(ctx, store, "nope", "v1"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `no dataset "nope"`) {
		t.Errorf("missing dataset: %v", err)
	}
	spec := tinySpec()
	spec.Languages = []string{"fr"}
	spec.Phrases.Categories = []corpus.Category{corpus.Numbers}
	spec.UnseenPairs = nil
	if _, err := BuildSynthetic(ctx, SynthBuild{Store: store, Name: "one", Version: "v1", Spec: spec, Espeak: espeak(t), CLDR: cldr(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, store, "one", "v9"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "versions: v1") {
		t.Errorf("missing version: %v, want one listing v1", err)
	}
	if _, err := Open(ctx, store, "Bad Name", "v1"); err == nil || !strings.Contains(err.Error(), "dataset name") {
		t.Errorf("bad name: %v", err)
	}
}

func TestSpecValidation(t *testing.T) {
	tests := []struct {
		edit func(*SynthSpec)
		want string
	}{
		{func(s *SynthSpec) { s.Variants = nil }, "variants"},
		{func(s *SynthSpec) { s.Speeds = []int{10} }, "speed 10"},
		{func(s *SynthSpec) { s.Pitches = []int{120} }, "pitch 120"},
		{func(s *SynthSpec) { s.UnseenVoices = []string{"zz"} }, `unseen voice "zz"`},
		{func(s *SynthSpec) { s.UnseenVoices = s.Variants }, "nothing is left"},
		{func(s *SynthSpec) { s.SampleRate = 100 }, "sample_rate"},
		{func(s *SynthSpec) { s.ShardBytes = 10 }, "shard_bytes"},
		{func(s *SynthSpec) { s.Phrases.Categories = []corpus.Category{"weather"} }, "weather"},
	}
	for _, tt := range tests {
		s := DefaultSynthSpec()
		tt.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.want)
		}
	}
	if err := DefaultSynthSpec().Validate(); err != nil {
		t.Errorf("default spec: %v", err)
	}
	// An unknown language is caught before any synthesis, listing the known.
	s := DefaultSynthSpec()
	s.Languages = []string{"fr", "klingon"}
	_, err := plan(context.Background(), s, espeak(t), cldr(t), 1)
	if err == nil || !strings.Contains(err.Error(), `"klingon"`) || !strings.Contains(err.Error(), " fr ") {
		t.Errorf("unknown language: %v", err)
	}
}

func TestImportCVSSLayout(t *testing.T) {
	store := newStore(t)
	ctx := context.Background()
	dir := t.TempDir()
	es := espeak(t)
	say := func(voice, text, file string) {
		wav, err := es.Say(ctx, voice, corpus.Speaker{}, text)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), wav, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	say("fr-fr", "bonjour", "p1_fr.wav")
	say("de", "guten Tag", "p1_de.wav")
	say("es", "buenos días", "p1_es.wav")
	say("fr-fr", "merci", "p2_fr.wav")
	say("de", "danke", "p2_de.wav")
	tsv := "id\tsrc_lang\tsrc_wav\ttgt_lang\ttgt_wav\n" +
		"p1\tfr\tp1_fr.wav\tde\tp1_de.wav\n" +
		"p1\tfr\tp1_fr.wav\tes\tp1_es.wav\n" +
		"p2\tfr\tp2_fr.wav\tde\tp2_de.wav\n"
	if err := os.WriteFile(filepath.Join(dir, "pairs.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	im := Import{Store: store, Name: "cvss", Version: "v1", Spec: ImportSpec{Manifest: "pairs.tsv"}, Files: os.DirFS(dir)}
	m, err := BuildImport(ctx, im)
	if err != nil {
		t.Fatal(err)
	}
	if m.Records != 2 || m.Utterances != 5 || len(m.Languages) != 3 {
		t.Errorf("import: %d records, %d utterances, %d languages; want 2, 5, 3", m.Records, m.Utterances, len(m.Languages))
	}

	// The same corpus from the bucket.
	for _, f := range []string{"pairs.tsv", "p1_fr.wav", "p1_de.wav", "p1_es.wav", "p2_fr.wav", "p2_de.wav"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, "incoming/cvss/"+f, b); err != nil {
			t.Fatal(err)
		}
	}
	im = Import{Store: store, Name: "cvss", Version: "v2", Spec: ImportSpec{Manifest: "incoming/cvss/pairs.tsv", FromBucket: true}}
	if m2, err := BuildImport(ctx, im); err != nil || m2.Utterances != 5 {
		t.Fatalf("import from bucket: %v", err)
	}

	bad := []struct{ tsv, want string }{
		{"p1\tfr\tp1_fr.wav\tde\n", "line 1: 4 columns"},
		{"p1\tfr\tmissing.wav\tde\tp1_de.wav\n", "missing.wav"},
		{"p1\t\tp1_fr.wav\tde\tp1_de.wav\n", "source language"},
		{"p1\tfr\tpairs.tsv\tde\tp1_de.wav\n", "pairs.tsv"}, // not a WAV
	}
	for i, tt := range bad {
		name := filepath.Join(dir, "bad.tsv")
		if err := os.WriteFile(name, []byte(tt.tsv), 0o644); err != nil {
			t.Fatal(err)
		}
		im := Import{Store: store, Name: "cvss", Version: "bad" + string(rune('a'+i)), Spec: ImportSpec{Manifest: "bad.tsv"}, Files: os.DirFS(dir)}
		if _, err := BuildImport(ctx, im); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("import of %q: %v, want an error mentioning %q", tt.tsv, err, tt.want)
		}
	}
}

// TestPlanLeavesOutCrashes: espeak-ng 1.51 segfaults on some texts in
// some voices every time (Greenlandic "28"). A wrapper around the real
// binary crashes the same way on German "2"; the plan leaves that one
// rendering out and lists it, and a crash that does not repeat is not one.
func TestPlanLeavesOutCrashes(t *testing.T) {
	real := espeak(t)
	dir := t.TempDir()
	flaky := filepath.Join(dir, "once")
	script := `#!/bin/sh
text=$(cat)
case "$*" in *gmw/de*) if [ "$text" = "2" ]; then kill -SEGV $$; fi ;; esac
case "$*" in *gmw/en*) if [ "$text" = "3" ] && [ ! -e "` + flaky + `" ]; then : > "` + flaky + `"; kill -SEGV $$; fi ;; esac
printf '%s' "$text" | exec "` + real.Path + `" "$@"
`
	wrapper := filepath.Join(dir, "espeak-ng")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	es := corpus.Espeak{Path: wrapper}
	ctx := context.Background()
	if _, err := es.Say(ctx, "gmw/de", corpus.Speaker{}, "2"); !errors.Is(err, corpus.ErrCrashed) {
		t.Fatalf("Say of a crashing text: %v, want ErrCrashed", err)
	}
	if _, err := es.Say(ctx, "gmw/de", corpus.Speaker{}, "1"); err != nil {
		t.Fatalf("Say of a good text: %v", err)
	}
	s := DefaultSynthSpec()
	s.Languages = []string{"de", "en"}
	s.Phrases = corpus.PhraseSpec{Categories: []corpus.Category{corpus.Numbers}, NumberMax: 3}
	s.UnseenPhrases = nil
	p, err := plan(ctx, s, es, cldr(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"de num:2"}; !slices.Equal(p.unspeakable, want) {
		t.Fatalf("unspeakable %v, want %v", p.unspeakable, want)
	}
	if p.phrases["de"] != 3 || p.phrases["en"] != 4 {
		t.Fatalf("phrases per language %v, want de 3 and en 4", p.phrases)
	}
	for _, r := range p.records {
		for _, u := range r.utts {
			if u.lang.Code == "de" && r.key == corpus.NumberID(2) {
				t.Fatalf("record %s still has a de utterance", r.key)
			}
		}
	}
}
