package dataset

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/shard"
)

// SynthSpec says what synthetic corpus to build. It is stored in the
// manifest, so a version says exactly how it was made.
type SynthSpec struct {
	// Languages are corpus codes ("fr", "zh", "en-gb"); empty means every
	// language espeak-ng and CLDR both cover.
	Languages []string          `json:"languages,omitempty"`
	Phrases   corpus.PhraseSpec `json:"phrases"`
	// Every utterance is spoken by each combination of variant, speed and
	// pitch; variants listed in UnseenVoices are held out of training.
	Variants     []string `json:"variants"`
	Speeds       []int    `json:"speeds"`
	Pitches      []int    `json:"pitches"`
	UnseenVoices []string `json:"unseen_voices"`
	// Canon is the clean reference voice: one rendering per language that
	// serves as the training target and the evaluation template.
	Canon corpus.Speaker `json:"canon"`
	// UnseenPhrases are phrase ids kept out of training records.
	UnseenPhrases []string `json:"unseen_phrases"`
	// UnseenPairs are (source, target) directions never trained on.
	UnseenPairs [][2]string `json:"unseen_pairs"`
	SampleRate  int         `json:"sample_rate"`
	// ShardBytes is the target shard size.
	ShardBytes int64  `json:"shard_bytes"`
	Seed       uint64 `json:"seed"`
}

// DefaultSynthSpec is a corpus of every covered language, numbers 0..30 and
// all CLDR phrase categories, spoken by seven voices at two speeds and two
// pitches, with two more voices held out.
func DefaultSynthSpec() SynthSpec {
	return SynthSpec{
		Phrases:       corpus.PhraseSpec{NumberMax: 30},
		Variants:      []string{"m1", "m2", "m3", "m5", "f1", "f2", "f3", "m7", "f5"},
		Speeds:        []int{150, 180},
		Pitches:       []int{40, 60},
		UnseenVoices:  []string{"m7", "f5"},
		Canon:         corpus.Speaker{Speed: 165, Pitch: 50},
		UnseenPhrases: []string{corpus.NumberID(17), corpus.NumberID(27)},
		SampleRate:    16000,
		ShardBytes:    64 << 20,
		Seed:          1,
	}
}

// Validate checks the spec's fields, naming the bad one.
func (s SynthSpec) Validate() error {
	switch {
	case len(s.Variants) == 0:
		return errors.New("synth spec: variants is empty: give at least one espeak-ng variant (e.g. m1)")
	case len(s.Speeds) == 0 || len(s.Pitches) == 0:
		return errors.New("synth spec: speeds and pitches need at least one value each")
	case s.SampleRate < 8000 || s.SampleRate > 48000:
		return fmt.Errorf("synth spec: sample_rate %d: want 8000..48000", s.SampleRate)
	case s.ShardBytes < 1<<20:
		return fmt.Errorf("synth spec: shard_bytes %d: want >= 1 MiB", s.ShardBytes)
	case s.Phrases.NumberMax < 0 || s.Phrases.NumberMax > 100000:
		return fmt.Errorf("synth spec: number_max %d: want 0..100000", s.Phrases.NumberMax)
	}
	for _, v := range s.Speeds {
		if v < 80 || v > 450 {
			return fmt.Errorf("synth spec: speed %d: espeak-ng takes 80..450 words per minute", v)
		}
	}
	for _, p := range append(slices.Clone(s.Pitches), s.Canon.Pitch) {
		if p < 0 || p > 99 {
			return fmt.Errorf("synth spec: pitch %d: espeak-ng takes 0..99", p)
		}
	}
	for _, u := range s.UnseenVoices {
		if !slices.Contains(s.Variants, u) {
			return fmt.Errorf("synth spec: unseen voice %q is not among the variants %v", u, s.Variants)
		}
	}
	if len(s.UnseenVoices) == len(s.Variants) {
		return errors.New("synth spec: every variant is held out as an unseen voice: nothing is left to train on")
	}
	for _, c := range s.Phrases.Categories {
		if _, err := corpus.ParseCategory(string(c)); err != nil {
			return err
		}
	}
	return nil
}

// speakers lists every (variant, speed, pitch), in a fixed order.
func (s SynthSpec) speakers() []corpus.Speaker {
	var out []corpus.Speaker
	for _, v := range s.Variants {
		for _, sp := range s.Speeds {
			for _, p := range s.Pitches {
				out = append(out, corpus.Speaker{Variant: v, Speed: sp, Pitch: p})
			}
		}
	}
	return out
}

// CanonSpeaker is the speaker id of the clean reference renderings.
const CanonSpeaker = "canon"

// plannedUtt is one utterance to synthesize.
type plannedUtt struct {
	lang    corpus.Language
	speaker corpus.Speaker
	canon   bool
	text    string
}

// plannedRecord is one phrase and every utterance of it.
type plannedRecord struct {
	key   string
	split string
	utts  []plannedUtt
}

// synthPlan is the whole corpus, in record order: train records first, then
// held-out phrases, each sorted by phrase id.
type synthPlan struct {
	langs   []corpus.Language
	records []plannedRecord
	phrases map[string]int // phrases per language
	// unspeakable lists "<lang> <phrase id>" renderings espeak-ng crashed
	// on, left out.
	unspeakable []string
}

// plan resolves the spec against espeak-ng's voices and CLDR's locales.
func plan(ctx context.Context, spec SynthSpec, es corpus.Espeak, cldr *corpus.CLDR, workers int) (*synthPlan, error) {
	voices, err := es.Voices(ctx)
	if err != nil {
		return nil, err
	}
	all := corpus.MatchLanguages(voices, cldr)
	langs := all
	if len(spec.Languages) > 0 {
		byCode := map[string]corpus.Language{}
		for _, l := range all {
			byCode[l.Code] = l
		}
		langs = nil
		for _, c := range spec.Languages {
			l, ok := byCode[c]
			if !ok {
				codes := make([]string, len(all))
				for i, l := range all {
					codes[i] = l.Code
				}
				return nil, fmt.Errorf("synth spec: unknown language %q: espeak-ng and CLDR cover %s", c, strings.Join(codes, " "))
			}
			langs = append(langs, l)
		}
	}
	for _, p := range spec.UnseenPairs {
		for _, c := range p {
			if !slices.ContainsFunc(langs, func(l corpus.Language) bool { return l.Code == c }) {
				return nil, fmt.Errorf("synth spec: unseen pair %s->%s: language %q is not in the corpus", p[0], p[1], c)
			}
		}
	}
	speakers := spec.speakers()
	type rendering struct {
		lang   corpus.Language
		phrase corpus.Phrase
	}
	var todo []rendering
	for _, l := range langs {
		loc, err := cldr.Locale(l.Locale)
		if err != nil {
			return nil, err
		}
		for _, ph := range corpus.Phrases(l.Code, loc, spec.Phrases) {
			todo = append(todo, rendering{l, ph})
		}
	}
	// Speak each phrase once in each language before planning: a text the
	// voice crashes on is left out of that language (and listed in the
	// manifest), not found an hour into the build.
	crashed := make([]bool, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, workers))
	for i, r := range todo {
		g.Go(func() error {
			for try := 0; try < 2; try++ { // a crash must repeat to count
				_, err := es.Say(gctx, r.lang.Voice, spec.Canon, r.phrase.Text)
				if err == nil {
					crashed[i] = false
					return nil
				}
				if !errors.Is(err, corpus.ErrCrashed) {
					return err
				}
				crashed[i] = true
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	byKey := map[string]*plannedRecord{}
	perLang := map[string]int{}
	var unspeakable []string
	for i, rd := range todo {
		l, ph := rd.lang, rd.phrase
		if crashed[i] {
			unspeakable = append(unspeakable, l.Code+" "+ph.ID)
			continue
		}
		r := byKey[ph.ID]
		if r == nil {
			split := shard.SplitTrain
			if slices.Contains(spec.UnseenPhrases, ph.ID) {
				split = shard.SplitUnseenPhrases
			}
			r = &plannedRecord{key: ph.ID, split: split}
			byKey[ph.ID] = r
		}
		perLang[l.Code]++
		r.utts = append(r.utts, plannedUtt{lang: l, speaker: spec.Canon, canon: true, text: ph.Text})
		for _, sp := range speakers {
			r.utts = append(r.utts, plannedUtt{lang: l, speaker: sp, text: ph.Text})
		}
	}
	p := &synthPlan{langs: langs, phrases: perLang, unspeakable: unspeakable}
	for _, r := range byKey {
		p.records = append(p.records, *r)
	}
	sort.Slice(p.records, func(i, j int) bool {
		a, b := p.records[i], p.records[j]
		if a.split != b.split {
			return a.split == shard.SplitTrain
		}
		return a.key < b.key
	})
	return p, nil
}

// DefaultUnseenPairs picks n (source, target) directions among langs,
// deterministically from seed, for a spec's UnseenPairs.
func DefaultUnseenPairs(langs []string, n int, seed uint64) [][2]string {
	var all [][2]string
	for _, a := range langs {
		for _, b := range langs {
			if a != b {
				all = append(all, [2]string{a, b})
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	out := all[:min(n, len(all))]
	sort.Slice(out, func(i, j int) bool { return out[i][0]+"/"+out[i][1] < out[j][0]+"/"+out[j][1] })
	return out
}

// synthesize speaks one utterance and returns it as a PCM16 WAV at rate.
func synthesize(ctx context.Context, es corpus.Espeak, u plannedUtt, rate int, rs *resamplers) (shard.Utterance, error) {
	wav, err := es.Say(ctx, u.lang.Voice, u.speaker, u.text)
	if err != nil {
		return shard.Utterance{}, err
	}
	clip, err := audio.DecodeWAV(wav, audio.Limits{})
	if err != nil {
		return shard.Utterance{}, fmt.Errorf("espeak-ng -v %s %q: %w", u.lang.Voice, u.text, err)
	}
	if clip.Rate != rate {
		r, err := rs.get(clip.Rate, rate)
		if err != nil {
			return shard.Utterance{}, err
		}
		clip, err = r.Clip(clip)
		rs.put(r)
		if err != nil {
			return shard.Utterance{}, err
		}
	}
	out, err := audio.EncodeWAV(clip, audio.PCM16)
	if err != nil {
		return shard.Utterance{}, err
	}
	id := u.speaker.String()
	if u.canon {
		id = CanonSpeaker
	}
	return shard.Utterance{
		Lang:    u.lang.Code,
		Speaker: id,
		Canon:   u.canon,
		Samples: len(clip.Samples),
		Seconds: clip.Seconds(),
		Text:    u.text,
		Audio:   out,
	}, nil
}

// resamplers lends out resamplers so that workers design the filter once,
// not once per utterance (the design costs a fifth of a build's CPU).
type resamplers struct{ free chan *audio.Resampler }

func newResamplers(n int) *resamplers { return &resamplers{free: make(chan *audio.Resampler, n)} }

func (p *resamplers) get(in, out int) (*audio.Resampler, error) {
	select {
	case r := <-p.free:
		if r.InRate() == in && r.OutRate() == out {
			return r, nil
		}
	default:
	}
	return audio.NewResampler(in, out, audio.ResampleConfig{})
}

func (p *resamplers) put(r *audio.Resampler) {
	select {
	case p.free <- r:
	default:
	}
}
