package serving

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/serving/batcher"
)

// engine is one loaded release behind its own batcher. A swap replaces the
// Server's engine pointer and drains the old engine's batcher.
type engine struct {
	rel   registry.Release
	name  string
	m     *model.Model
	langs []string
	rate  int // output sample rate
	b     *batcher.Batcher[model.DecodeOptions, model.Input, itemOut]
}

// itemOut is one input's result: a batch may hold an input the model
// refuses without failing the others.
type itemOut struct {
	out model.Output
	err error
}

func newEngine(rel registry.Release, m *model.Model, cfg batcher.Config, met *metrics) (*engine, error) {
	e := &engine{rel: rel, name: rel.Name(), m: m, langs: m.Languages(), rate: m.Frontend().Rate()}
	if e.rate <= 0 {
		return nil, fmt.Errorf("serving: %s: model has output rate %d", e.name, e.rate)
	}
	b, err := batcher.New(cfg, e.exec, batcher.OnBatch(func(s batcher.BatchStats) {
		met.execs.WithLabelValues(e.name).Inc()
		met.count.WithLabelValues(e.name).Add(float64(s.Size))
		met.batch.WithLabelValues(e.name).Observe(float64(s.Size))
	}))
	if err != nil {
		return nil, err
	}
	e.b = b
	return e, nil
}

// exec runs one batch. When the batch as a whole fails for a reason other
// than cancellation, each input is retried alone so that one bad input
// cannot fail the requests batched with it.
func (e *engine) exec(ctx context.Context, opt model.DecodeOptions, ins []model.Input) ([]itemOut, error) {
	outs, err := e.m.Translate(ctx, ins, opt)
	res := make([]itemOut, len(ins))
	if err == nil {
		for i := range outs {
			res[i].out = outs[i]
		}
		return res, nil
	}
	if ctx.Err() != nil || len(ins) == 1 {
		if len(ins) == 1 && ctx.Err() == nil {
			res[0].err = err
			return res, nil
		}
		return nil, err
	}
	for i, in := range ins {
		o, err := e.m.Translate(ctx, []model.Input{in}, opt)
		if err != nil {
			res[i].err = err
			continue
		}
		res[i].out = o[0]
	}
	return res, nil
}

func (e *engine) knows(lang string) bool { return slices.Contains(e.langs, lang) }

// warmUp runs a real batch through the model: one second of a voiced
// tone per executor slot, so that first requests meet warm caches and
// a release that cannot translate never takes traffic.
func (e *engine) warmUp(ctx context.Context, maxBatch int, opt model.DecodeOptions) error {
	if len(e.langs) == 0 {
		return fmt.Errorf("serving: %s speaks no language", e.name)
	}
	clip := audio.Clip{Rate: e.rate, Samples: make([]float32, e.rate)}
	for i := range clip.Samples {
		t := float64(i) / float64(e.rate)
		clip.Samples[i] = float32(0.3 * math.Sin(2*math.Pi*180*t) * math.Sin(math.Pi*t))
	}
	n := min(maxBatch, runtime.GOMAXPROCS(0))
	ins := make([]model.Input, n)
	for i := range ins {
		ins[i] = model.Input{Audio: clip, TargetLang: e.langs[i%len(e.langs)]}
	}
	outs, err := e.m.Translate(ctx, ins, opt)
	if err != nil {
		return fmt.Errorf("serving: warming up %s: %w", e.name, err)
	}
	for i, o := range outs {
		if o.Audio.Rate != e.rate {
			return fmt.Errorf("serving: warming up %s: output %d at %d Hz, want %d", e.name, i, o.Audio.Rate, e.rate)
		}
	}
	return nil
}

var errNoRelease = errors.New("no model release is serving yet")
