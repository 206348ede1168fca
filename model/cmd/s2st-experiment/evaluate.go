package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/eval"
)

type split struct {
	name  string
	pairs []pair
}

// splits draws o.evalN translations per direction for each test split
// (half that for the seen split, five times that for the few held-out
// directions).
func (p *prep) splits(o options) []split {
	var train, voices, phrases, pairsHeld []pair
	for i, u := range p.cd.Utts {
		if u.Canon {
			continue
		}
		for _, t := range o.langs {
			if t == u.Lang {
				continue
			}
			pr := pair{i, t}
			held := p.heldPair[[2]string{u.Lang, t}]
			switch {
			case p.heldPhrase[u.Phrase]:
				phrases = append(phrases, pr)
			case !p.trainVar[u.Variant]:
				voices = append(voices, pr)
			case held:
				pairsHeld = append(pairsHeld, pr)
			default:
				train = append(train, pr)
			}
		}
	}
	rng := rand.New(rand.NewPCG(o.seed, 31337))
	// pick draws n translations per direction, so every direction counts.
	pick := func(s []pair, n int) []pair {
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		if n <= 0 {
			return s
		}
		per := map[[2]string]int{}
		var out []pair
		for _, pr := range s {
			d := [2]string{p.cd.Utts[pr.src].Lang, pr.target}
			if per[d] < n {
				per[d]++
				out = append(out, pr)
			}
		}
		return out
	}
	return []split{
		{"seen (train voices)", pick(train, (o.evalN+1)/2)},
		{"unseen voices", pick(voices, o.evalN)},
		{"unseen phrases", pick(phrases, o.evalN)},
		{"unseen pairs", pick(pairsHeld, 5*o.evalN)},
	}
}

type itemResult struct {
	model, floor, copy struct {
		correct bool
		mcd     float64
	}
}

func evaluate(ctx context.Context, p *prep, m *model.Model, o options) error {
	voc, err := m.Vocoder(ctx)
	if err != nil {
		return err
	}
	// The floor depends only on the reference: compute it once per
	// (language, phrase).
	type floorRes struct {
		correct bool
		mcd     float64
	}
	var fmu sync.Mutex
	floors := map[key]floorRes{}
	floorOf := func(k key) (floorRes, error) {
		fmu.Lock()
		r, ok := floors[k]
		fmu.Unlock()
		if ok {
			return r, nil
		}
		ref := p.logMel[p.canon[k]]
		seq, err := m.Codebook().Encode(ref, m.Config().UnitStride)
		if err != nil {
			return r, err
		}
		clip, err := voc.Synthesize(ctx, seq)
		if err != nil {
			return r, err
		}
		lm, err := p.front.LogMel(clip)
		if err != nil {
			return r, err
		}
		got, _, err := p.templates.Nearest(k.lang, lm)
		if err != nil {
			return r, err
		}
		r = floorRes{got == k.phrase, eval.MCD(ref, lm)}
		fmu.Lock()
		floors[k] = r
		fmu.Unlock()
		return r, nil
	}
	rep := eval.Report{}
	byTarget := map[string]*eval.Tally{}
	bySource := map[string]*eval.Tally{}
	seenPairs := &eval.Tally{}
	byDir := map[[2]string]*eval.Tally{}
	for _, sp := range p.splits(o) {
		start := time.Now()
		res := make([]itemResult, len(sp.pairs))
		errs := make([]error, len(sp.pairs))
		parallel(len(sp.pairs), 2, func(i int) {
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			pr := sp.pairs[i]
			u := p.cd.Utts[pr.src]
			k := key{pr.target, u.Phrase}
			ref := p.logMel[p.canon[k]]
			out, err := m.Translate(ctx, []model.Input{{Audio: u.clip(p.cd.Spec.Rate), TargetLang: pr.target}}, model.DecodeOptions{Beam: o.beam})
			if err != nil {
				errs[i] = err
				return
			}
			var lm audio.Spectrogram
			if len(out[0].Audio.Samples) > 0 {
				if lm, err = p.front.LogMel(out[0].Audio); err != nil {
					errs[i] = err
					return
				}
			}
			r := &res[i]
			if lm.Frames > 0 {
				got, _, err := p.templates.Nearest(pr.target, lm)
				if err != nil {
					errs[i] = err
					return
				}
				r.model.correct, r.model.mcd = got == u.Phrase, eval.MCD(ref, lm)
			} else {
				r.model.mcd = math.NaN()
			}
			f, err := floorOf(k)
			if err != nil {
				errs[i] = err
				return
			}
			r.floor.correct, r.floor.mcd = f.correct, f.mcd
			src := p.logMel[pr.src]
			got, _, err := p.templates.Nearest(pr.target, src)
			if err != nil {
				errs[i] = err
				return
			}
			r.copy.correct, r.copy.mcd = got == u.Phrase, eval.MCD(ref, src)
		})
		for i, r := range res {
			if errs[i] != nil {
				return errs[i]
			}
			rep.Get(sp.name, "model").Add(r.model.correct, r.model.mcd)
			rep.Get(sp.name, "floor").Add(r.floor.correct, r.floor.mcd)
			rep.Get(sp.name, "copy").Add(r.copy.correct, r.copy.mcd)
			if sp.name == "unseen voices" {
				pr := sp.pairs[i]
				src := p.cd.Utts[pr.src].Lang
				for _, t := range []struct {
					m map[string]*eval.Tally
					k string
				}{{byTarget, pr.target}, {bySource, src}} {
					if t.m[t.k] == nil {
						t.m[t.k] = &eval.Tally{}
					}
					t.m[t.k].Add(r.model.correct, r.model.mcd)
				}
				if !p.heldPair[[2]string{src, pr.target}] {
					seenPairs.Add(r.model.correct, r.model.mcd)
				}
				d := [2]string{src, pr.target}
				if byDir[d] == nil {
					byDir[d] = &eval.Tally{}
				}
				byDir[d].Add(r.model.correct, r.model.mcd)
			}
		}
		slog.Info("evaluated", "split", sp.name, "n", len(sp.pairs), "took", time.Since(start).Round(time.Second))
	}
	fmt.Println("== results (concept accuracy by DTW nearest template over every phrase of the target language; MCD-DTW vs the canonical reference)")
	fmt.Printf("languages: %s; held-out pairs: %s; held-out phrases: %s; beam %d\n", strings.Join(o.langs, " "), strings.Join(p.heldPairsList(), " "), strings.Join(o.heldPhrases, " "), o.beam)
	for _, l := range rep.Lines() {
		fmt.Println(l)
	}
	fmt.Printf("%-22s %-6s %s\n", "unseen voices/seen pairs", "model", seenPairs)
	langs := make([]string, 0, len(byTarget))
	for l := range byTarget {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	fmt.Println("unseen voices by target language (model):")
	for _, l := range langs {
		fmt.Printf("  into %-5s %s\n", l, byTarget[l])
	}
	fmt.Println("unseen voices by source language (model):")
	for _, l := range langs {
		if t := bySource[l]; t != nil {
			fmt.Printf("  from %-5s %s\n", l, t)
		}
	}
	fmt.Println("unseen voices, model concept accuracy % by direction (row: source, column: target; * held-out pair):")
	fmt.Printf("%6s", "")
	for _, l := range langs {
		fmt.Printf("%7s", l)
	}
	fmt.Println()
	minDir, minAcc := "", 2.0
	for _, a := range langs {
		fmt.Printf("%6s", a)
		for _, b := range langs {
			t := byDir[[2]string{a, b}]
			if t == nil {
				fmt.Printf("%7s", "-")
				continue
			}
			mark := " "
			if p.heldPair[[2]string{a, b}] {
				mark = "*"
			}
			fmt.Printf("%6.0f%s", 100*t.Accuracy(), mark)
			if t.Accuracy() < minAcc {
				minDir, minAcc = a+"->"+b, t.Accuracy()
			}
		}
		fmt.Println()
	}
	fmt.Printf("directions evaluated: %d; lowest: %s %.1f%%\n", len(byDir), minDir, 100*minAcc)
	return nil
}
