package trainer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/progress"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/eval"
	"babelfish.dev/babelfish/objstore"
)

// Evaluation split names, as they appear in reports and metric keys.
const (
	EvalUnseenVoices  = "unseen_voices"
	EvalUnseenPhrases = "unseen_phrases"
	EvalUnseenPairs   = "unseen_pairs"
	// EvalSeenVoices is training data: the training voices on trained
	// directions. Its accuracy beside the unseen voices' is the
	// generalisation gap (EvalConfig.SeenPerDirection; off by default).
	EvalSeenVoices = "seen_voices"
)

// Systems every split is scored for: the model, the vocoder floor
// (resynthesis of the reference's true units) and the do-nothing baseline
// (the source speech itself).
const (
	SystemModel = "model"
	SystemFloor = "floor"
	SystemCopy  = "copy"
)

// EvalConfig says what to evaluate and how much.
type EvalConfig struct {
	// Checkpoint is the committed checkpoint's prefix.
	Checkpoint string
	// Dataset and DatasetVersion default to the checkpoint's training data.
	Dataset, DatasetVersion string
	// Languages restricts the directions to these (default: every language
	// of the model); each must be known to the model and the dataset.
	Languages []string
	// PerDirection is how many translations each direction of the
	// unseen-voices split gets at most (drawn with Seed); 0 takes every
	// one. PhrasesPerDirection and PairsPerDirection do the same for the
	// other splits; 0 there means PerDirection for unseen phrases and five
	// times it for unseen pairs (a split of few directions).
	PerDirection        int
	PhrasesPerDirection int
	PairsPerDirection   int
	// SeenPerDirection, when positive, also scores this many translations
	// per trained direction spoken by training voices (EvalSeenVoices): how
	// well the model fits what it trained on.
	SeenPerDirection int
	// Beam is the decoder's beam width (0 or 1: greedy).
	Beam int
	Seed uint64
	// Vocoder, when set, renders the model's and the floor's units with
	// this vocoder (a model.Config.Vocoder value) instead of the model's
	// own, so vocoders can be compared on one checkpoint.
	Vocoder string
	// Workers bounds parallel translations; 0 means GOMAXPROCS.
	Workers int
	// Progress, if not nil, gets a progress bar.
	Progress io.Writer
	Log      *slog.Logger
}

// Limits of EvalConfig.
const (
	MaxPerDirection = 1 << 16
	MaxBeam         = 64
)

// Score is one system's figures on a set of translations.
type Score struct {
	N       int     `json:"n"`
	Correct int     `json:"correct"`
	Acc     float64 `json:"concept_accuracy"`
	// MCD is the mean MCD-DTW in dB over the MCDN outputs that had speech.
	MCD  float64 `json:"mcd"`
	MCDN int     `json:"mcd_n"`
}

func scoreOf(t eval.Tally) Score {
	s := Score{N: t.N, Correct: t.Correct, MCDN: t.MCDN}
	if t.N > 0 {
		s.Acc = t.Accuracy()
	}
	if t.MCDN > 0 {
		s.MCD = t.MeanMCD()
	}
	return s
}

// String is "acc  93.1% (1234/1325) MCD  6.12 dB".
func (s Score) String() string {
	mcd := "   - "
	if s.MCDN > 0 {
		mcd = fmt.Sprintf("%5.2f", s.MCD)
	}
	return fmt.Sprintf("acc %5.1f%% (%d/%d) MCD %s dB", 100*s.Acc, s.Correct, s.N, mcd)
}

// DirectionScore is a split's figures for one (source, target) direction.
type DirectionScore struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// HeldOut marks a direction never trained on (an unseen pair).
	HeldOut bool  `json:"held_out,omitempty"`
	Model   Score `json:"model"`
	Copy    Score `json:"copy"`
}

// SplitScore is one split's figures.
type SplitScore struct {
	Name  string `json:"name"`
	Model Score  `json:"model"`
	Floor Score  `json:"floor"`
	Copy  Score  `json:"copy"`
	// SeenPairs is the model on the split's directions that were trained
	// (differs from Model only for unseen voices, which cover all).
	SeenPairs  Score            `json:"seen_pairs"`
	Directions []DirectionScore `json:"directions"`
}

// EvalReport is what Evaluate measured; it is stored beside the
// checkpoint.
type EvalReport struct {
	Checkpoint     string   `json:"checkpoint"`
	Step           int64    `json:"step"`
	Dataset        string   `json:"dataset"`
	DatasetVersion string   `json:"dataset_version"`
	Languages      []string `json:"languages"`
	// LanguagesAsked is EvalConfig.Languages (empty: all of the model's).
	LanguagesAsked []string    `json:"languages_asked,omitempty"`
	UnseenPairs    [][2]string `json:"unseen_pairs"`
	UnseenPhrases  []string    `json:"unseen_phrases"`
	PerDirection   int         `json:"per_direction"`
	// PhrasesPerDirection and PairsPerDirection are the other splits'
	// draws (defaults resolved).
	PhrasesPerDirection int    `json:"phrases_per_direction"`
	PairsPerDirection   int    `json:"pairs_per_direction"`
	SeenPerDirection    int    `json:"seen_per_direction,omitempty"`
	Beam                int    `json:"beam"`
	Seed                uint64 `json:"seed"`
	// Vocoder is EvalConfig.Vocoder (empty: the model's own).
	Vocoder string       `json:"vocoder,omitempty"`
	Splits  []SplitScore `json:"splits"`
	Seconds float64      `json:"seconds"`
	Time    time.Time    `json:"time"`
}

// Split returns the named split's score.
func (r *EvalReport) Split(name string) (SplitScore, bool) {
	for _, s := range r.Splits {
		if s.Name == name {
			return s, true
		}
	}
	return SplitScore{}, false
}

// Metrics flattens the report into the keys a TrainingJob's
// status.evalMetrics and a promotion policy use: concept_accuracy and mcd
// are the model on unseen voices; <split>_[floor_|copy_]concept_accuracy
// and <split>_[floor_|copy_]mcd the rest; <split>_min_direction_accuracy
// the worst direction.
func (r *EvalReport) Metrics() map[string]float64 {
	out := map[string]float64{}
	for _, s := range r.Splits {
		for sys, sc := range map[string]Score{"": s.Model, "floor_": s.Floor, "copy_": s.Copy} {
			if sc.N > 0 {
				out[s.Name+"_"+sys+"concept_accuracy"] = sc.Acc
			}
			if sc.MCDN > 0 {
				out[s.Name+"_"+sys+"mcd"] = sc.MCD
			}
		}
		lowest := math.Inf(1)
		for _, d := range s.Directions {
			if d.Model.N > 0 {
				lowest = math.Min(lowest, d.Model.Acc)
			}
		}
		if !math.IsInf(lowest, 0) {
			out[s.Name+"_min_direction_accuracy"] = lowest
		}
		if s.Name == EvalUnseenVoices {
			if s.Model.N > 0 {
				out["concept_accuracy"] = s.Model.Acc
			}
			if s.Model.MCDN > 0 {
				out["mcd"] = s.Model.MCD
			}
		}
	}
	return out
}

// evalItem is one translation to score.
type evalItem struct {
	split  string
	src    string // source language
	tgt    string
	phrase string // record key
	audio  []byte // source WAV
	// where the source lives, for the second read
	shard string
	rec   int
	utt   int
}

// evalSource is what Evaluate reads before any compute.
type evalSource struct {
	ck       *Checkpoint
	version  *dataset.Version
	langs    []string
	heldPair map[[2]string]bool
}

// prepareEval loads and checks everything an evaluation needs, so bad
// input fails before compute.
func prepareEval(ctx context.Context, store *objstore.Client, c EvalConfig) (*evalSource, EvalConfig, error) {
	var errs []error
	if c.Checkpoint == "" {
		errs = append(errs, errors.New("trainer: EvalConfig.Checkpoint is empty: name a checkpoint prefix (checkpoints/<job>/<step>/)"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"PerDirection", c.PerDirection}, {"PhrasesPerDirection", c.PhrasesPerDirection}, {"PairsPerDirection", c.PairsPerDirection}, {"SeenPerDirection", c.SeenPerDirection}} {
		if f.v < 0 || f.v > MaxPerDirection {
			errs = append(errs, fmt.Errorf("trainer: EvalConfig.%s is %d: want 0 (see its doc) up to %d", f.name, f.v, MaxPerDirection))
		}
	}
	if c.Beam < 0 || c.Beam > MaxBeam {
		errs = append(errs, fmt.Errorf("trainer: EvalConfig.Beam is %d: want 0..%d", c.Beam, MaxBeam))
	}
	if err := model.CheckVocoder(c.Vocoder); err != nil {
		errs = append(errs, fmt.Errorf("trainer: EvalConfig.Vocoder: %w", err))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("trainer: EvalConfig.Workers is %d: want >= 0", c.Workers))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, c, err
	}
	c = c.withCounts()
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	ck, err := LoadCheckpoint(ctx, store, c.Checkpoint)
	if err != nil {
		return nil, c, err
	}
	if c.Dataset == "" {
		c.Dataset = ck.State.Config.Dataset
	}
	if c.DatasetVersion == "" {
		c.DatasetVersion = ck.State.Config.DatasetVersion
	}
	v, err := dataset.Open(ctx, store, c.Dataset, c.DatasetVersion)
	if err != nil {
		return nil, c, fmt.Errorf("trainer: eval dataset %s/%s: %w", c.Dataset, c.DatasetVersion, err)
	}
	langs := ck.Model.Languages()
	if len(c.Languages) > 0 {
		for _, l := range c.Languages {
			if _, err := ck.Model.Config().LangIndex(l); err != nil {
				return nil, c, fmt.Errorf("trainer: EvalConfig.Languages: %w", err)
			}
		}
		langs = slices.Clone(c.Languages)
	}
	if len(langs) < 2 {
		return nil, c, fmt.Errorf("trainer: EvalConfig.Languages is %v: evaluation needs at least 2 languages", langs)
	}
	if err := v.CheckLanguages(langs); err != nil {
		return nil, c, fmt.Errorf("trainer: eval dataset %s/%s: %w", c.Dataset, c.DatasetVersion, err)
	}
	src := &evalSource{ck: ck, version: v, langs: langs, heldPair: map[[2]string]bool{}}
	for _, p := range v.Manifest.Splits.UnseenPairs {
		src.heldPair[p] = true
	}
	return src, c, nil
}

// Evaluate scores a checkpoint on the dataset's three test splits: concept
// accuracy (DTW nearest template among clean renderings of every phrase of
// the target language) and MCD-DTW against the reference, for the model,
// the vocoder floor and the copy-the-input baseline. Bad input (a missing
// checkpoint or dataset, an unknown language) fails before any compute.
func Evaluate(ctx context.Context, store *objstore.Client, c EvalConfig) (*EvalReport, error) {
	start := time.Now()
	src, c, err := prepareEval(ctx, store, c)
	if err != nil {
		return nil, err
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	m := src.ck.Model
	front := m.Frontend()
	man := src.version.Manifest

	// Pass 1: templates (every canonical rendering in the languages) and
	// the candidate translations of each split, without their audio.
	inLang := map[string]bool{}
	for _, l := range src.langs {
		inLang[l] = true
	}
	unseenVoice := map[string]bool{}
	for _, v := range man.Splits.UnseenVoices {
		unseenVoice[v] = true
	}
	tpl := eval.NewTemplates()
	refs := map[[2]string]audio.Spectrogram{} // (lang, phrase) -> canonical log-mel
	cands := map[string]map[[2]string][]evalItem{}
	addCand := func(it evalItem) {
		if cands[it.split] == nil {
			cands[it.split] = map[[2]string][]evalItem{}
		}
		d := [2]string{it.src, it.tgt}
		cands[it.split][d] = append(cands[it.split][d], it)
	}
	err = forEachRecord(ctx, src.version, nil, func(key string, ri int, rec *shard.Record) error {
		canon := map[string]bool{}
		for _, u := range rec.Utterances {
			if u.Canon && inLang[u.Lang] {
				canon[u.Lang] = true
				lm, err := logMel(front, &u)
				if err != nil {
					return fmt.Errorf("record %s canonical %s: %w", rec.Key, u.Lang, err)
				}
				if err := tpl.Add(u.Lang, rec.Key, lm); err != nil {
					return err
				}
				refs[[2]string{u.Lang, rec.Key}] = lm
			}
		}
		for ui, u := range rec.Utterances {
			if u.Canon || !inLang[u.Lang] {
				continue
			}
			for _, t := range src.langs {
				if t == u.Lang || !canon[t] {
					continue
				}
				it := evalItem{src: u.Lang, tgt: t, phrase: rec.Key, shard: key, rec: ri, utt: ui}
				held := src.heldPair[[2]string{u.Lang, t}]
				switch {
				case rec.Split == shard.SplitUnseenPhrases:
					it.split = EvalUnseenPhrases
				case rec.Split != shard.SplitTrain:
					continue
				case unseenVoice[u.Speaker]:
					it.split = EvalUnseenVoices
				case held:
					it.split = EvalUnseenPairs
				case c.SeenPerDirection > 0:
					it.split = EvalSeenVoices
				default:
					continue
				}
				addCand(it)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Draw PerDirection items per direction by a hash of (seed, item), so
	// the draw depends on nothing else.
	rank := func(it evalItem) uint64 {
		h := fnv.New64a()
		_ = binary.Write(h, binary.LittleEndian, c.Seed)
		fmt.Fprintf(h, "%s|%s|%s|%d|%d", it.tgt, it.phrase, it.shard, it.rec, it.utt)
		return h.Sum64()
	}
	var items []evalItem
	want := map[[3]int]bool{} // (shard index, record, utterance)
	shardIdx := map[string]int{}
	for i, s := range man.Shards {
		shardIdx[s.Key] = i
	}
	splits := []string{EvalUnseenVoices, EvalUnseenPhrases, EvalUnseenPairs}
	if c.SeenPerDirection > 0 {
		splits = append(splits, EvalSeenVoices)
	}
	for _, sp := range splits {
		n := map[string]int{EvalUnseenVoices: c.PerDirection, EvalUnseenPhrases: c.PhrasesPerDirection, EvalUnseenPairs: c.PairsPerDirection, EvalSeenVoices: c.SeenPerDirection}[sp]
		dirs := make([][2]string, 0, len(cands[sp]))
		for d := range cands[sp] {
			dirs = append(dirs, d)
		}
		sort.Slice(dirs, func(i, j int) bool { return dirs[i][0]+dirs[i][1] < dirs[j][0]+dirs[j][1] })
		for _, d := range dirs {
			cs := cands[sp][d]
			sort.Slice(cs, func(i, j int) bool { return rank(cs[i]) < rank(cs[j]) })
			if n > 0 && len(cs) > n {
				cs = cs[:n]
			}
			for _, it := range cs {
				want[[3]int{shardIdx[it.shard], it.rec, it.utt}] = true
				items = append(items, it)
			}
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("trainer: dataset %s/%s has no test translation in %v (splits: unseen voices %v, unseen phrases %v, unseen pairs %v)",
			c.Dataset, c.DatasetVersion, src.langs, man.Splits.UnseenVoices, man.Splits.UnseenPhrases, man.Splits.UnseenPairs)
	}

	// Pass 2: the selected sources' audio, from the shards that hold them.
	audioOf := map[[3]int][]byte{}
	need := map[string]bool{}
	for _, it := range items {
		need[it.shard] = true
	}
	err = forEachRecord(ctx, src.version, need, func(key string, ri int, rec *shard.Record) error {
		si := shardIdx[key]
		for ui := range rec.Utterances {
			k := [3]int{si, ri, ui}
			if want[k] {
				// A copy: the shard's buffer can go.
				audioOf[k] = bytes.Clone(rec.Utterances[ui].Audio)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range items {
		items[i].audio = audioOf[[3]int{shardIdx[items[i].shard], items[i].rec, items[i].utt}]
	}
	log.Info("evaluating", "checkpoint", src.ck.Prefix, "step", src.ck.State.Step, "dataset", c.Dataset+"/"+c.DatasetVersion,
		"translations", len(items), "languages", src.langs, "beam", c.Beam)

	// The floor depends only on the reference: once per (language, phrase).
	type floorRes struct {
		once    sync.Once
		correct bool
		mcd     float64
		err     error
	}
	var fmu sync.Mutex
	floors := map[[2]string]*floorRes{}
	voc, err := m.VocoderOf(ctx, c.Vocoder)
	if err != nil {
		return nil, err
	}
	floorOf := func(lang, phrase string) *floorRes {
		k := [2]string{lang, phrase}
		fmu.Lock()
		f := floors[k]
		if f == nil {
			f = &floorRes{}
			floors[k] = f
		}
		fmu.Unlock()
		f.once.Do(func() {
			ref := refs[k]
			seq, err := m.Codebook().Encode(ref, m.Config().UnitStride)
			if err != nil {
				f.err = err
				return
			}
			clip, err := voc.Synthesize(ctx, seq)
			if err != nil {
				f.err = err
				return
			}
			lm, err := front.LogMel(clip)
			if err != nil {
				f.err = err
				return
			}
			got, _, err := tpl.Nearest(lang, lm)
			f.correct, f.mcd, f.err = got == phrase, eval.MCD(ref, lm), err
		})
		return f
	}

	type result struct {
		model, floor, copy struct {
			correct bool
			mcd     float64
		}
	}
	results := make([]result, len(items))
	errs := make([]error, len(items))
	var bar *progress.Bar
	if c.Progress != nil {
		bar = progress.New(c.Progress, "eval", "translations", int64(len(items)))
	}
	opt := model.DecodeOptions{Beam: c.Beam, Vocoder: c.Vocoder}
	work := make(chan int)
	var wg sync.WaitGroup
	for range c.Workers {
		wg.Go(func() {
			for i := range work {
				errs[i] = func() error {
					it := items[i]
					r := &results[i]
					clip, err := audio.DecodeWAV(it.audio, audio.Limits{})
					if err != nil {
						return err
					}
					ref := refs[[2]string{it.tgt, it.phrase}]
					out, err := m.Translate(ctx, []model.Input{{Audio: clip, TargetLang: it.tgt}}, opt)
					if err != nil {
						return err
					}
					r.model.mcd = math.NaN()
					if len(out[0].Audio.Samples) > 0 {
						lm, err := front.LogMel(out[0].Audio)
						if err != nil {
							return err
						}
						if lm.Frames > 0 {
							got, _, err := tpl.Nearest(it.tgt, lm)
							if err != nil {
								return err
							}
							r.model.correct, r.model.mcd = got == it.phrase, eval.MCD(ref, lm)
						}
					}
					f := floorOf(it.tgt, it.phrase)
					if f.err != nil {
						return f.err
					}
					r.floor.correct, r.floor.mcd = f.correct, f.mcd
					lm, err := front.LogMel(clip)
					if err != nil {
						return err
					}
					got, _, err := tpl.Nearest(it.tgt, lm)
					if err != nil {
						return err
					}
					r.copy.correct, r.copy.mcd = got == it.phrase, eval.MCD(ref, lm)
					return nil
				}()
				if errs[i] != nil {
					errs[i] = fmt.Errorf("trainer: eval %s %s->%s %s: %w", items[i].split, items[i].src, items[i].tgt, items[i].phrase, errs[i])
				}
				if bar != nil {
					bar.Add(1)
				}
			}
		})
	}
feed:
	for i := range items {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if bar != nil {
		bar.Done()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	rep := &EvalReport{
		Checkpoint: src.ck.Prefix, Step: src.ck.State.Step, Dataset: c.Dataset, DatasetVersion: c.DatasetVersion,
		Languages: src.langs, LanguagesAsked: c.Languages, UnseenPairs: man.Splits.UnseenPairs, UnseenPhrases: man.Splits.UnseenPhrases,
		PerDirection: c.PerDirection, PhrasesPerDirection: c.PhrasesPerDirection, PairsPerDirection: c.PairsPerDirection, SeenPerDirection: c.SeenPerDirection, Beam: c.Beam, Seed: c.Seed, Vocoder: c.Vocoder, Time: time.Now().UTC(),
	}
	for _, sp := range splits {
		var tm, tf, tc, seen eval.Tally
		type dirT struct{ m, c eval.Tally }
		dirs := map[[2]string]*dirT{}
		for i, it := range items {
			if it.split != sp {
				continue
			}
			r := results[i]
			tm.Add(r.model.correct, r.model.mcd)
			tf.Add(r.floor.correct, r.floor.mcd)
			tc.Add(r.copy.correct, r.copy.mcd)
			d := [2]string{it.src, it.tgt}
			if !src.heldPair[d] {
				seen.Add(r.model.correct, r.model.mcd)
			}
			if dirs[d] == nil {
				dirs[d] = &dirT{}
			}
			dirs[d].m.Add(r.model.correct, r.model.mcd)
			dirs[d].c.Add(r.copy.correct, r.copy.mcd)
		}
		if tm.N == 0 {
			continue
		}
		s := SplitScore{Name: sp, Model: scoreOf(tm), Floor: scoreOf(tf), Copy: scoreOf(tc), SeenPairs: scoreOf(seen)}
		for d, t := range dirs {
			s.Directions = append(s.Directions, DirectionScore{Source: d[0], Target: d[1], HeldOut: src.heldPair[d], Model: scoreOf(t.m), Copy: scoreOf(t.c)})
		}
		sort.Slice(s.Directions, func(i, j int) bool {
			a, b := s.Directions[i], s.Directions[j]
			return a.Source < b.Source || a.Source == b.Source && a.Target < b.Target
		})
		rep.Splits = append(rep.Splits, s)
	}
	rep.Seconds = math.Round(time.Since(start).Seconds()*10) / 10
	return rep, nil
}

// forEachRecord reads the version's shards (only those in keep, when not
// nil) in manifest order and calls f with each record and its index in
// its shard.
func forEachRecord(ctx context.Context, v *dataset.Version, keep map[string]bool, f func(shardKey string, i int, r *shard.Record) error) error {
	for _, si := range v.Manifest.Shards {
		if keep != nil && !keep[si.Key] {
			continue
		}
		data, err := v.Artifact.Get(ctx, si.Key)
		if err != nil {
			return err
		}
		rd := shard.NewReader(si.Key, bytes.NewReader(data))
		for i := 0; ; i++ {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if err := f(si.Key, i, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// withCounts resolves the per-direction draws' defaults.
func (c EvalConfig) withCounts() EvalConfig {
	if c.PhrasesPerDirection == 0 {
		c.PhrasesPerDirection = c.PerDirection
	}
	if c.PairsPerDirection == 0 {
		c.PairsPerDirection = 5 * c.PerDirection
	}
	return c
}

// EvalPrefix is where an evaluation of checkpoint prefix ck with c (its
// Dataset and DatasetVersion set) is stored: an artifact under the
// checkpoint, named for what was evaluated, so evaluations with other data
// or settings sit side by side.
func EvalPrefix(ck string, c EvalConfig) string {
	c = c.withCounts()
	l := ""
	if len(c.Languages) > 0 {
		l = "-" + strings.Join(c.Languages, "_")
	}
	if c.Vocoder != "" {
		l += "-v" + c.Vocoder
	}
	seen := ""
	if c.SeenPerDirection > 0 {
		seen = fmt.Sprintf("_%d", c.SeenPerDirection)
	}
	return fmt.Sprintf("%seval/%s-%s%s-n%d_%d_%d%s-b%d-s%d/", ck, c.Dataset, c.DatasetVersion, l,
		c.PerDirection, c.PhrasesPerDirection, c.PairsPerDirection, seen, max(c.Beam, 1), c.Seed)
}

// config is the EvalConfig that reproduces the report.
func (r *EvalReport) config() EvalConfig {
	return EvalConfig{Checkpoint: r.Checkpoint, Dataset: r.Dataset, DatasetVersion: r.DatasetVersion, Languages: r.LanguagesAsked,
		PerDirection: r.PerDirection, PhrasesPerDirection: r.PhrasesPerDirection, PairsPerDirection: r.PairsPerDirection, SeenPerDirection: r.SeenPerDirection, Beam: r.Beam, Seed: r.Seed, Vocoder: r.Vocoder}
}

// Eval artifact part names.
const (
	PartEvalMetrics = "metrics.json" // EvalReport.Metrics
	PartEvalReport  = "report.json"  // EvalReport
)

// SaveEval stores rep under its checkpoint (see EvalPrefix): the report
// and its flat metrics as parts, the metrics again as the manifest's meta,
// the manifest last. It returns the prefix.
func SaveEval(ctx context.Context, store *objstore.Client, rep *EvalReport) (string, error) {
	prefix := EvalPrefix(rep.Checkpoint, rep.config())
	w, err := store.NewArtifact(prefix)
	if err != nil {
		return "", err
	}
	metrics := rep.Metrics()
	mb, err := json.MarshalIndent(metrics, "", "  ")
	if err != nil {
		return "", err
	}
	rb, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := w.Put(ctx, PartEvalReport, rb, nil); err != nil {
		return "", err
	}
	if _, err := w.Put(ctx, PartEvalMetrics, mb, nil); err != nil {
		return "", err
	}
	if _, err := w.Commit(ctx, metrics); err != nil {
		return "", fmt.Errorf("trainer: committing evaluation %s: %w", prefix, err)
	}
	return prefix, nil
}

// LoadEval reads a stored evaluation report (checked against its
// manifest).
func LoadEval(ctx context.Context, store *objstore.Client, prefix string) (*EvalReport, error) {
	a, err := store.OpenArtifact(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("trainer: evaluation %s: %w", prefix, err)
	}
	raw, err := a.Get(ctx, PartEvalReport)
	if err != nil {
		return nil, fmt.Errorf("trainer: evaluation %s: %w", prefix, err)
	}
	var rep EvalReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("trainer: evaluation %s: %w", prefix, err)
	}
	return &rep, nil
}

// Evaluations lists the prefixes of the committed evaluations of
// checkpoint prefix ck, in key order.
func Evaluations(ctx context.Context, store *objstore.Client, ck string) ([]string, error) {
	if !strings.HasSuffix(ck, "/") {
		ck += "/"
	}
	return store.ListArtifacts(ctx, ck+"eval/")
}

// WriteText prints the report: per split the model, floor and copy
// figures, then the unseen-voices accuracy by direction as a source x
// target table, and by target and by source language.
func (r *EvalReport) WriteText(w io.Writer) error {
	var b strings.Builder
	voc := r.Vocoder
	if voc == "" {
		voc = "the model's own"
	}
	seen := ""
	if r.SeenPerDirection > 0 {
		seen = fmt.Sprintf("; %d per trained direction by training voices", r.SeenPerDirection)
	}
	fmt.Fprintf(&b, "== evaluation of %s (step %d) on %s/%s, beam %d, vocoder %s, up to %d/%d/%d translations per direction (unseen voices/phrases/pairs; 0: all%s)\n",
		r.Checkpoint, r.Step, r.Dataset, r.DatasetVersion, max(r.Beam, 1), voc, r.PerDirection, r.PhrasesPerDirection, r.PairsPerDirection, seen)
	fmt.Fprintf(&b, "concept accuracy: DTW nearest template among clean renderings of every phrase of the target language; MCD-DTW (c1..c24) against the reference rendering\n")
	pairs := make([]string, len(r.UnseenPairs))
	for i, p := range r.UnseenPairs {
		pairs[i] = p[0] + "->" + p[1]
	}
	fmt.Fprintf(&b, "languages: %s; unseen pairs: %s; unseen phrases: %s\n", strings.Join(r.Languages, " "), strings.Join(pairs, " "), strings.Join(r.UnseenPhrases, " "))
	for _, s := range r.Splits {
		fmt.Fprintf(&b, "%-16s model  %s\n", s.Name, s.Model)
		fmt.Fprintf(&b, "%-16s floor  %s\n", s.Name, s.Floor)
		fmt.Fprintf(&b, "%-16s copy   %s\n", s.Name, s.Copy)
		if s.SeenPairs.N != s.Model.N && s.SeenPairs.N > 0 {
			fmt.Fprintf(&b, "%-16s model  %s  (trained directions only)\n", s.Name, s.SeenPairs)
		}
	}
	for _, s := range r.Splits {
		if s.Name != EvalUnseenVoices {
			continue
		}
		byDir := map[[2]string]DirectionScore{}
		for _, d := range s.Directions {
			byDir[[2]string{d.Source, d.Target}] = d
		}
		fmt.Fprintf(&b, "%s: model concept accuracy %% by direction (row: source, column: target; * unseen pair)\n", s.Name)
		fmt.Fprintf(&b, "%6s", "")
		for _, l := range r.Languages {
			fmt.Fprintf(&b, "%7s", l)
		}
		b.WriteString("\n")
		lowest, lowestDir, perDir := 2.0, "", 0
		for _, a := range r.Languages {
			fmt.Fprintf(&b, "%6s", a)
			for _, t := range r.Languages {
				d, ok := byDir[[2]string{a, t}]
				if !ok {
					fmt.Fprintf(&b, "%7s", "-")
					continue
				}
				mark := " "
				if d.HeldOut {
					mark = "*"
				}
				fmt.Fprintf(&b, "%6.0f%s", 100*d.Model.Acc, mark)
				if d.Model.Acc < lowest {
					lowest, lowestDir = d.Model.Acc, a+"->"+t
				}
				perDir = max(perDir, d.Model.N)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %d directions, up to %d translations each; lowest %s %.1f%%\n", s.Name, len(s.Directions), perDir, lowestDir, 100*lowest)
		for _, side := range []struct {
			name string
			of   func(DirectionScore) string
		}{
			{"target", func(d DirectionScore) string { return d.Target }},
			{"source", func(d DirectionScore) string { return d.Source }},
		} {
			fmt.Fprintf(&b, "%s: model concept accuracy by %s language:", s.Name, side.name)
			for _, l := range r.Languages {
				var n, ok int
				for _, d := range s.Directions {
					if side.of(d) == l {
						n, ok = n+d.Model.N, ok+d.Model.Correct
					}
				}
				if n > 0 {
					fmt.Fprintf(&b, " %s %.0f%%", l, 100*float64(ok)/float64(n))
				}
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "took %.0f s\n", r.Seconds)
	_, err := io.WriteString(w, b.String())
	return err
}
