package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/loader"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/features"
	"babelfish.dev/babelfish/model/units"
)

// filters are the manifest's held-out voices and directions plus the
// model's languages: what pair drawing skips.
type filters struct {
	langs        map[string]bool
	unseenVoices map[string]bool
	unseenPairs  map[[2]string]bool
}

func newFilters(m *shard.Manifest, langs []string) filters {
	f := filters{langs: map[string]bool{}, unseenVoices: map[string]bool{}, unseenPairs: map[[2]string]bool{}}
	for _, l := range langs {
		f.langs[l] = true
	}
	for _, v := range m.Splits.UnseenVoices {
		f.unseenVoices[v] = true
	}
	for _, p := range m.Splits.UnseenPairs {
		f.unseenPairs[p] = true
	}
	return f
}

// pairSeed mixes (epoch, sample index) into one PCG stream id (splitmix64
// finaliser), so the target drawn for a sample depends on nothing else.
func pairSeed(epoch, index int) uint64 {
	z := uint64(epoch)<<40 ^ uint64(index)
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// drawTarget picks the target language of sample (epoch, s): among the
// record's other languages that have a canonical rendering, are trained,
// and are not a held-out direction from the source. It reports false for a
// sample that yields no pair (a canonical or held-out-voice utterance, or a
// record with no eligible target).
func (f filters) drawTarget(seed uint64, epoch int, s loader.Sample) (string, bool) {
	u := s.Utterance()
	if u.Canon || f.unseenVoices[u.Speaker] || !f.langs[u.Lang] {
		return "", false
	}
	var cands []string
	for _, o := range s.Record.Utterances {
		if !o.Canon || o.Lang == u.Lang || !f.langs[o.Lang] || f.unseenPairs[[2]string{u.Lang, o.Lang}] {
			continue
		}
		if !slices.Contains(cands, o.Lang) {
			cands = append(cands, o.Lang)
		}
	}
	if len(cands) == 0 {
		return "", false
	}
	sort.Strings(cands)
	rng := rand.New(rand.NewPCG(seed, pairSeed(epoch, s.Index)))
	return cands[rng.IntN(len(cands))], true
}

// canonical returns the record's canonical utterance of lang.
func canonical(r *shard.Record, lang string) (*shard.Utterance, bool) {
	for i := range r.Utterances {
		if u := &r.Utterances[i]; u.Canon && u.Lang == lang {
			return u, true
		}
	}
	return nil, false
}

// logMel decodes an utterance and returns its trimmed log-mel frames.
func logMel(front *features.Frontend, u *shard.Utterance) (audio.Spectrogram, error) {
	clip, err := audio.DecodeWAV(u.Audio, audio.Limits{})
	if err != nil {
		return audio.Spectrogram{}, err
	}
	return front.LogMel(clip)
}

// featureCache keeps each utterance's encoder inputs (by sample index: the
// unwarped one, then one per warp factor) and each phrase's target units
// (by record key and language), so an epoch after the first decodes no
// audio.
type featureCache struct {
	warps   []float64 // mel-axis factors after the unwarped input
	mu      sync.Mutex
	inputs  map[int][][]float32
	targets map[[2]string]units.Sequence
}

// newFeatureCache keeps warped inputs too when warp > 0 (Config.Warp).
func newFeatureCache(warp float64) *featureCache {
	c := &featureCache{inputs: map[int][][]float32{}, targets: map[[2]string]units.Sequence{}}
	if warp > 0 {
		c.warps = []float64{1 - warp, 1 - warp/2, 1 + warp/2, 1 + warp}
	}
	return c
}

// variants is how many encoder inputs a sample has to draw from.
func (c *featureCache) variants() int { return 1 + len(c.warps) }

// example builds the training pair of sample s with target language tgt
// from encoder input variant (0: unwarped; see variants).
func (c *featureCache) example(m *model.Model, s loader.Sample, tgt string, variant int) (model.Example, error) {
	c.mu.Lock()
	ins, okIn := c.inputs[s.Index]
	key := [2]string{s.Record.Key, tgt}
	seq, okT := c.targets[key]
	c.mu.Unlock()
	if !okIn {
		u := s.Utterance()
		lm, err := logMel(m.Frontend(), u)
		if err != nil {
			return model.Example{}, fmt.Errorf("record %s %s %s: %w", s.Record.Key, u.Lang, u.Speaker, err)
		}
		ins = make([][]float32, c.variants())
		for i := range ins {
			src := lm
			if i > 0 {
				src = features.WarpMel(lm, c.warps[i-1])
			}
			if ins[i], err = m.EncoderInput(src); err != nil {
				return model.Example{}, fmt.Errorf("record %s %s %s: %w", s.Record.Key, u.Lang, u.Speaker, err)
			}
		}
	}
	if !okT {
		u, ok := canonical(s.Record, tgt)
		if !ok {
			return model.Example{}, fmt.Errorf("record %s has no canonical %s utterance", s.Record.Key, tgt)
		}
		lm, err := logMel(m.Frontend(), u)
		if err != nil {
			return model.Example{}, fmt.Errorf("record %s canonical %s: %w", s.Record.Key, tgt, err)
		}
		if seq, err = m.TargetSequence(lm); err != nil {
			return model.Example{}, fmt.Errorf("record %s canonical %s: %w", s.Record.Key, tgt, err)
		}
	}
	c.mu.Lock()
	c.inputs[s.Index] = ins
	c.targets[key] = seq
	c.mu.Unlock()
	return m.NewExample(ins[variant%len(ins)], tgt, seq)
}

// unitData is what learning the codebook yields.
type unitData struct {
	codebook *units.Codebook
	// longest is the longest canonical target, in units, under it.
	longest int
}

// learnUnits runs k-means over the unit frames of every canonical
// utterance of the training split in the model's languages, in manifest
// order, so every run over the same data and seed gets the same codebook.
func learnUnits(ctx context.Context, v *dataset.Version, cfg model.Config, seed uint64, maxFrames int) (unitData, error) {
	front, err := features.NewFrontend(cfg.Features)
	if err != nil {
		return unitData{}, err
	}
	langs := map[string]bool{}
	for _, l := range cfg.Languages {
		langs[l] = true
	}
	var mels []audio.Spectrogram
	for _, si := range v.Manifest.Shards {
		if si.Split != shard.SplitTrain {
			continue
		}
		data, err := v.Artifact.Get(ctx, si.Key)
		if err != nil {
			return unitData{}, err
		}
		rd := shard.NewReader(si.Key, bytes.NewReader(data))
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return unitData{}, err
			}
			for i := range rec.Utterances {
				u := &rec.Utterances[i]
				if !u.Canon || !langs[u.Lang] {
					continue
				}
				lm, err := logMel(front, u)
				if err != nil {
					return unitData{}, fmt.Errorf("record %s canonical %s: %w", rec.Key, u.Lang, err)
				}
				mels = append(mels, lm)
			}
		}
	}
	if len(mels) == 0 {
		return unitData{}, fmt.Errorf("trainer: dataset %s/%s has no canonical training utterance in %v: nothing to learn units from", v.Manifest.Name, v.Manifest.Version, cfg.Languages)
	}
	var frames []float32
	for _, lm := range mels {
		frames = append(frames, units.PoolFrames(lm, cfg.UnitStride).Data...)
	}
	dim := cfg.NMels()
	if n := len(frames) / dim; n > maxFrames {
		// Keep an evenly spaced subset.
		sub := make([]float32, 0, maxFrames*dim)
		for i := range maxFrames {
			j := i * n / maxFrames
			sub = append(sub, frames[j*dim:(j+1)*dim]...)
		}
		frames = sub
	}
	cb, err := units.KMeans(ctx, frames, dim, units.KMeansConfig{K: cfg.Units, Seed: seed})
	if err != nil {
		return unitData{}, fmt.Errorf("trainer: learning %d units (Config.Model.Units): %w", cfg.Units, err)
	}
	longest := 0
	for _, lm := range mels {
		seq, err := cb.Encode(lm, cfg.UnitStride)
		if err != nil {
			return unitData{}, err
		}
		longest = max(longest, len(seq.Units))
	}
	return unitData{codebook: cb, longest: longest}, nil
}
