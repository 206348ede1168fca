package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset/corpus"
)

// corpusSpec says what to synthesise; a cache file is reused only when its
// spec is equal.
type corpusSpec struct {
	Langs         []string
	NumberMax     int
	TrainVariants []string
	HeldVariants  []string
	Speeds        []int
	Pitches       []int
	Canon         corpus.Speaker
	Rate          int
}

// utt is one utterance: PCM16 samples at the spec's rate.
type utt struct {
	Lang, Phrase, Speaker string
	Variant               string
	Canon                 bool
	PCM                   []int16
}

type corpusData struct {
	Spec    corpusSpec
	Phrases []string // phrase ids present in every language, sorted
	Utts    []utt
}

func (u utt) clip(rate int) audio.Clip {
	x := make([]float32, len(u.PCM))
	for i, v := range u.PCM {
		x[i] = float32(v) / 32768
	}
	return audio.Clip{Rate: rate, Samples: x}
}

// loadOrBuild reads the cache at path when it holds spec's corpus, or
// synthesises it (and writes the cache when path is set).
func loadOrBuild(ctx context.Context, spec corpusSpec, path, espeak string, workers int) (*corpusData, error) {
	if path != "" {
		if cd, err := readCache(path); err == nil && reflect.DeepEqual(cd.Spec, spec) {
			slog.Info("corpus cache hit", "path", path, "utterances", len(cd.Utts))
			return cd, nil
		} else if err == nil {
			slog.Info("corpus cache holds another spec; rebuilding", "path", path)
		}
	}
	cd, err := build(ctx, spec, espeak, workers)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := writeCache(path, cd); err != nil {
			return nil, err
		}
	}
	return cd, nil
}

func readCache(path string) (*corpusData, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cd corpusData
	if err := gob.NewDecoder(f).Decode(&cd); err != nil {
		return nil, err
	}
	return &cd, nil
}

func writeCache(path string, cd *corpusData) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(cd); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type job struct {
	lang    corpus.Language
	phrase  corpus.Phrase
	speaker corpus.Speaker
	canon   bool
}

func build(ctx context.Context, spec corpusSpec, espeak string, workers int) (*corpusData, error) {
	cldr, err := corpus.OpenCLDR(corpus.DefaultCLDRDir)
	if err != nil {
		return nil, err
	}
	es := corpus.Espeak{Path: espeak}
	voices, err := es.Voices(ctx)
	if err != nil {
		return nil, err
	}
	all := corpus.MatchLanguages(voices, cldr)
	byLang := map[string][]corpus.Phrase{}
	langs := map[string]corpus.Language{}
	count := map[string]int{}
	for _, code := range spec.Langs {
		i := slices.IndexFunc(all, func(l corpus.Language) bool { return l.Code == code })
		if i < 0 {
			var known []string
			for _, l := range all {
				known = append(known, l.Code)
			}
			return nil, fmt.Errorf("language %q: espeak-ng and CLDR cover %v", code, known)
		}
		loc, err := cldr.Locale(all[i].Locale)
		if err != nil {
			return nil, err
		}
		langs[code] = all[i]
		byLang[code] = corpus.Phrases(code, loc, corpus.PhraseSpec{NumberMax: spec.NumberMax})
		for _, p := range byLang[code] {
			count[p.ID]++
		}
	}
	var phrases []string
	for id, n := range count {
		if n == len(spec.Langs) {
			phrases = append(phrases, id)
		}
	}
	sort.Strings(phrases)
	var speakers []corpus.Speaker
	for _, v := range append(slices.Clone(spec.TrainVariants), spec.HeldVariants...) {
		for _, s := range spec.Speeds {
			for _, p := range spec.Pitches {
				speakers = append(speakers, corpus.Speaker{Variant: v, Speed: s, Pitch: p})
			}
		}
	}
	var jobs []job
	for _, code := range spec.Langs {
		for _, ph := range byLang[code] {
			if count[ph.ID] != len(spec.Langs) {
				continue
			}
			jobs = append(jobs, job{lang: langs[code], phrase: ph, speaker: spec.Canon, canon: true})
			for _, sp := range speakers {
				jobs = append(jobs, job{lang: langs[code], phrase: ph, speaker: sp})
			}
		}
	}
	slog.Info("synthesising corpus", "languages", len(spec.Langs), "phrases", len(phrases), "utterances", len(jobs))
	out := make([]utt, len(jobs))
	errs := make([]error, len(jobs))
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				if i%2000 == 0 {
					slog.Info("synthesis", "done", i, "of", len(jobs), "elapsed", time.Since(start).Round(time.Second))
				}
				out[i], errs[i] = synth(ctx, es, jobs[i], spec.Rate)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slog.Info("corpus synthesised", "utterances", len(out), "took", time.Since(start).Round(time.Second))
	return &corpusData{Spec: spec, Phrases: phrases, Utts: out}, nil
}

func synth(ctx context.Context, es corpus.Espeak, j job, rate int) (utt, error) {
	wav, err := es.Say(ctx, j.lang.Voice, j.speaker, j.phrase.Text)
	if err != nil {
		return utt{}, err
	}
	c, err := audio.DecodeWAV(fixStreamedWAV(wav), audio.Limits{})
	if err != nil {
		return utt{}, err
	}
	if c, err = audio.Resample(c, rate); err != nil {
		return utt{}, err
	}
	pcm := make([]int16, len(c.Samples))
	for i, v := range c.Samples {
		pcm[i] = audio.ToPCM16(v)
	}
	sp := j.speaker.String()
	if j.canon {
		sp = "canon"
	}
	return utt{Lang: j.lang.Code, Phrase: j.phrase.ID, Speaker: sp, Variant: j.speaker.Variant, Canon: j.canon, PCM: pcm}, nil
}

func corpusSpeaker(speed, pitch int) corpus.Speaker {
	return corpus.Speaker{Speed: speed, Pitch: pitch}
}

// fixStreamedWAV patches the RIFF and data chunk sizes of a WAV written to a
// pipe (espeak-ng --stdout declares 0x7ffff000 bytes) to the bytes present.
func fixStreamedWAV(b []byte) []byte {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return b
	}
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	for off := 12; off+8 <= len(b); {
		size := int(binary.LittleEndian.Uint32(b[off+4:]))
		if string(b[off:off+4]) == "data" {
			if off+8+size > len(b) {
				binary.LittleEndian.PutUint32(b[off+4:], uint32(len(b)-off-8))
			}
			break
		}
		off += 8 + size + size%2
	}
	return b
}
