// Command s2st-experiment builds a synthetic multilingual corpus with
// espeak-ng in memory, trains the direct speech-to-speech translation model
// for a wall-clock budget, and reports concept accuracy and MCD per split
// (unseen voices, unseen phrases, unseen language pairs) beside the vocoder
// floor and the copy-the-input baseline.
//
// The corpus: CLDR phrases (numbers 0..N, days, months, relative days,
// country and language names) in every chosen language, spoken by espeak-ng
// variants m1 m2 m3 m5 f1 f2 f3 at speeds 150/180 and pitches 40/60 for
// training, m7 and f5 held out, and a canonical voice (default variant,
// speed 165, pitch 50) as the target and the evaluation templates. Phrases
// num:17 and num:27 and a few directions are held out of training.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "s2st-experiment:", err)
		os.Exit(1)
	}
}

type options struct {
	langs         []string
	heldPhrases   []string
	heldPairs     int
	budget        time.Duration
	maxSteps      int
	batch         int
	buckets       int
	positions     int
	lr            float64
	seed          uint64
	units         int
	stride        int
	segments      int
	cepstra       int
	encHidden     []int
	decHidden     int
	ctxHidden     int
	prevDropout   float64
	decLayers     int
	evalN         int
	evalEvery     int
	beam          int
	warp          float64
	save, load    string
	griffinIters  int
	diagNN        bool
	featCache     string
	clip          float64
	warmup        int
	diagDecode    bool
	expectedSteps int
}

func run() error {
	var o options
	langs := flag.String("langs", "de,en,es,fr,it,nl,pl,pt,ru,sv", "corpus languages")
	numbers := flag.Int("numbers", 30, "largest cardinal number spoken")
	cache := flag.String("cache", "", "corpus cache file (read if it matches, written otherwise)")
	flag.StringVar(&o.featCache, "feature-cache", "", "log-mel cache file for the corpus (read if it matches, written otherwise)")
	flag.Float64Var(&o.clip, "clip", 1, "global gradient-norm clip (0: none)")
	flag.IntVar(&o.warmup, "warmup", 200, "learning-rate warmup steps")
	espeak := flag.String("espeak", "espeak-ng", "espeak-ng binary")
	workers := flag.Int("synth-workers", 6, "parallel espeak-ng processes")
	held := flag.String("held-phrases", "num:17,num:27", "phrases kept out of training")
	flag.IntVar(&o.heldPairs, "held-pairs", 4, "directions kept out of training")
	flag.DurationVar(&o.budget, "budget", 60*time.Minute, "training wall-clock budget")
	flag.IntVar(&o.maxSteps, "steps", 0, "stop after this many steps (0: budget only)")
	flag.IntVar(&o.expectedSteps, "schedule-steps", 0, "cosine schedule length in steps (0: estimated from measured speed and the budget)")
	flag.IntVar(&o.batch, "batch", 256, "examples per step")
	flag.IntVar(&o.buckets, "buckets", 8, "target-length buckets (graphs of different lengths)")
	flag.IntVar(&o.positions, "positions", 2, "score this many sampled positions per target in one graph instead of length buckets (0: buckets, every position)")
	flag.Float64Var(&o.lr, "lr", 3e-3, "peak learning rate")
	seed := flag.Uint64("seed", 1, "seed for init, sampling and k-means")
	flag.IntVar(&o.units, "units", 128, "k-means units")
	flag.IntVar(&o.stride, "stride", 2, "10 ms frames per unit frame")
	flag.IntVar(&o.segments, "segments", 20, "encoder pooling segments")
	flag.IntVar(&o.cepstra, "cepstra", 20, "encoder input: mel cepstra c1..cN instead of log-mel (0: log-mel)")
	enc := flag.String("enc", "512,512", "encoder widths")
	flag.IntVar(&o.decHidden, "dec", 256, "decoder width")
	flag.IntVar(&o.ctxHidden, "ctx", 512, "context layer width")
	flag.Float64Var(&o.prevDropout, "prev-dropout", 0.5, "probability of hiding the previous unit from the decoder in training")
	flag.IntVar(&o.decLayers, "dec-layers", 1, "decoder hidden layers")
	flag.IntVar(&o.evalN, "eval-per-dir", 20, "translations evaluated per direction and split (0: all)")
	flag.IntVar(&o.evalEvery, "eval-every", 0, "quick unseen-voice check every N steps (0: never)")
	flag.IntVar(&o.beam, "beam", 1, "beam width for the final evaluation")
	flag.Float64Var(&o.warp, "warp", 0, "training augmentation: random mel-axis warp up to this fraction (0: none)")
	flag.IntVar(&o.griffinIters, "gl-iters", 32, "Griffin-Lim iterations of the vocoder")
	flag.StringVar(&o.save, "save", "", "write the trained model here")
	flag.BoolVar(&o.diagDecode, "diag-decode", false, "with -load: only compare greedy unit sequences with the targets")
	flag.BoolVar(&o.diagNN, "diag-nn", false, "only measure nearest-neighbour phrase separability of the encoder input")
	flag.StringVar(&o.load, "load", "", "evaluate this saved model instead of training")
	flag.Parse()
	o.seed = *seed
	o.langs = strings.Split(*langs, ",")
	o.heldPhrases = strings.Split(*held, ",")
	for _, w := range strings.Split(*enc, ",") {
		var v int
		if _, err := fmt.Sscan(w, &v); err != nil {
			return fmt.Errorf("-enc %q: %w", *enc, err)
		}
		o.encHidden = append(o.encHidden, v)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	spec := corpusSpec{
		Langs:         o.langs,
		NumberMax:     *numbers,
		TrainVariants: []string{"m1", "m2", "m3", "m5", "f1", "f2", "f3"},
		HeldVariants:  []string{"m7", "f5"},
		Speeds:        []int{150, 180},
		Pitches:       []int{40, 60},
		Canon:         corpusSpeaker(165, 50),
		Rate:          16000,
	}
	cd, err := loadOrBuild(ctx, spec, *cache, *espeak, *workers)
	if err != nil {
		return err
	}
	slog.Info("corpus", "utterances", len(cd.Utts), "phrases", len(cd.Phrases))
	return experiment(ctx, cd, o)
}
