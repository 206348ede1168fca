package model

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/eval"
	"babelfish.dev/babelfish/model/units"
)

// trainSteps runs n optimizer steps on batches drawn from exs with rng and
// returns the mean per-example loss of each step.
func trainSteps(t testing.TB, m *Model, opt *Adam, g *Graph, exs []Example, rng *rand.Rand, n int) []float64 {
	t.Helper()
	grads := make([]float32, m.Params().Size())
	batch := make([]Example, g.Batch())
	var losses []float64
	for range n {
		for i := range batch {
			batch[i] = exs[rng.IntN(len(exs))]
		}
		s, err := g.Gradients(batch, grads)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := opt.Step(m.Params().Flat, grads, 1/float64(s.Examples)); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, s.Loss/float64(s.Examples))
	}
	return losses
}

func newToyTrainer(t testing.TB, width int) (*Model, *Adam, *Graph, []Example, toyCorpus) {
	m, exs, tc := toySetup(t, func(c *Config) { c.EncoderHidden = []int{width}; c.DecoderHidden = width })
	cfg := DefaultAdamConfig()
	cfg.LR, cfg.WarmupSteps, cfg.DecaySteps = 1e-2, 20, 250
	opt, err := NewAdam(cfg, m.Params().Size())
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.NewGraph(16, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, opt, g, exs, tc
}

func TestTrainingIsDeterministic(t *testing.T) {
	var runs [2][]float64
	var weights [2][]float32
	for i := range runs {
		m, opt, g, exs, _ := newToyTrainer(t, 32)
		runs[i] = trainSteps(t, m, opt, g, exs, rand.New(rand.NewPCG(5, 6)), 15)
		weights[i] = slices.Clone(m.Params().Flat)
	}
	if !slices.Equal(runs[0], runs[1]) {
		t.Errorf("same seed, same batches, different losses:\n%v\n%v", runs[0], runs[1])
	}
	if !slices.Equal(weights[0], weights[1]) {
		t.Error("same seed, same batches, different weights")
	}
}

func TestResumeIsExact(t *testing.T) {
	const n, k = 12, 5
	m, opt, g, exs, _ := newToyTrainer(t, 32)
	rng := rand.New(rand.NewPCG(8, 9))
	straight := trainSteps(t, m, opt, g, exs, rng, n)

	m2, opt2, g2, _, _ := newToyTrainer(t, 32)
	rng2 := rand.New(rand.NewPCG(8, 9))
	first := trainSteps(t, m2, opt2, g2, exs, rng2, k)
	var mb bytes.Buffer
	if err := m2.Save(&mb); err != nil {
		t.Fatal(err)
	}
	state, err := opt2.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	m3, err := Load(&mb)
	if err != nil {
		t.Fatal(err)
	}
	var opt3 Adam
	if err := opt3.UnmarshalBinary(state); err != nil {
		t.Fatal(err)
	}
	if opt3.Steps() != k {
		t.Fatalf("restored optimizer at step %d, want %d", opt3.Steps(), k)
	}
	g3, err := m3.NewGraph(16, 0)
	if err != nil {
		t.Fatal(err)
	}
	rest := trainSteps(t, m3, &opt3, g3, exs, rng2, n-k)
	if got := append(first, rest...); !slices.Equal(got, straight) {
		t.Errorf("resumed losses differ:\n%v\n%v", got, straight)
	}
	if !slices.Equal(m3.Params().Flat, m.Params().Flat) {
		t.Error("resumed weights differ from straight-through weights")
	}
}

func TestTrainingLearnsToyTask(t *testing.T) {
	m, opt, g, exs, tc := newToyTrainer(t, 64)
	accuracy := func() float64 {
		// Concept accuracy on the training voices, through the full path.
		tm := eval.NewTemplates()
		for l, lang := range tc.langs {
			for p := range tc.phrases {
				lm, err := m.Frontend().LogMel(tc.say(l, p, 1, 1))
				if err != nil {
					t.Fatal(err)
				}
				if err := tm.Add(lang, string(rune('A'+p)), lm); err != nil {
					t.Fatal(err)
				}
			}
		}
		var ins []Input
		var want []string
		for l := range tc.langs {
			for p := range tc.phrases {
				ins = append(ins, Input{Audio: tc.say(l, p, 0.9, 1.1), TargetLang: tc.langs[(l+1)%len(tc.langs)]})
				want = append(want, string(rune('A'+p)))
			}
		}
		outs, err := m.Translate(context.Background(), ins, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		correct := 0
		for i, o := range outs {
			if len(o.Audio.Samples) == 0 {
				continue
			}
			lm, err := m.Frontend().LogMel(o.Audio)
			if err != nil {
				t.Fatal(err)
			}
			if got, _, err := tm.Nearest(ins[i].TargetLang, lm); err == nil && got == want[i] {
				correct++
			}
		}
		return float64(correct) / float64(len(outs))
	}
	steps := 250
	if raceEnabled {
		steps = 40
	}
	before := accuracy()
	losses := trainSteps(t, m, opt, g, exs, rand.New(rand.NewPCG(1, 1)), steps)
	after := accuracy()
	head, tail := mean(losses[:10]), mean(losses[len(losses)-10:])
	t.Logf("loss %.2f -> %.2f per example; concept accuracy %.2f -> %.2f", head, tail, before, after)
	if raceEnabled {
		if tail >= head {
			t.Errorf("loss went from %.2f to %.2f per example in %d steps", head, tail, steps)
		}
		return
	}
	if tail > head/10 {
		t.Errorf("loss fell from %.2f only to %.2f per example", head, tail)
	}
	if after < 0.8 || after <= before {
		t.Errorf("concept accuracy on seen data went %.2f -> %.2f, want >= 0.8", before, after)
	}
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m, _, _ := toySetup(t, nil)
	for i := range m.Params().Flat {
		m.Params().Flat[i] += float32(i%7) * 1e-3 // not just the init
	}
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		t.Fatal(err)
	}
	raw := slices.Clone(b.Bytes())
	m2, err := Load(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Params().Flat, m2.Params().Flat) || !slices.Equal(m.Codebook().Centroids, m2.Codebook().Centroids) {
		t.Error("weights or codebook changed in the round trip")
	}
	var b2 bytes.Buffer
	if err := m2.Save(&b2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, b2.Bytes()) {
		t.Error("Save(Load(Save(m))) differs from Save(m)")
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad magic"},
		{"future version", func(b []byte) []byte { b[8] = 9; return b }, "format version 9"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, "unexpected EOF"},
		{"empty", func(b []byte) []byte { return nil }, "bad magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(bytes.NewReader(tc.edit(slices.Clone(raw))))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestAdamStateRoundTrip(t *testing.T) {
	a, err := NewAdam(DefaultAdamConfig(), 5)
	if err != nil {
		t.Fatal(err)
	}
	p := []float32{1, 2, 3, 4, 5}
	for range 3 {
		if _, err := a.Step(p, []float32{0.1, -0.2, 0.3, 0, 5}, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var b Adam
	if err := b.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if b.Steps() != 3 || b.Config() != a.Config() || !slices.Equal(a.m, b.m) || !slices.Equal(a.v, b.v) {
		t.Error("state changed in the round trip")
	}
	for _, bad := range [][]byte{nil, raw[:20], raw[:len(raw)-1], append(slices.Clone(raw), 0)} {
		if err := new(Adam).UnmarshalBinary(bad); err == nil {
			t.Errorf("%d bytes of state accepted", len(bad))
		}
	}
}

func TestAdamSchedule(t *testing.T) {
	c := AdamConfig{LR: 1, Beta1: 0.9, Beta2: 0.99, Epsilon: 1e-8, WarmupSteps: 10, DecaySteps: 110, MinLRFraction: 0.1}
	for _, tc := range []struct {
		step int64
		want float64
	}{
		{0, 0.1}, {4, 0.5}, {9, 1}, {10, 1}, {60, 0.55}, {110, 0.1}, {500, 0.1},
	} {
		if got := c.LRAt(tc.step); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("LRAt(%d) = %g, want %g", tc.step, got, tc.want)
		}
	}
}

func TestAdamClipsGlobalNorm(t *testing.T) {
	cfg := DefaultAdamConfig()
	cfg.ClipNorm = 1
	a, _ := NewAdam(cfg, 2)
	st, err := a.Step([]float32{0, 0}, []float32{30, 40}, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Clipped || math.Abs(st.GradNorm-5) > 1e-6 {
		t.Errorf("stats %+v: want norm 5, clipped", st)
	}
	if _, err := a.Step([]float32{0, 0}, []float32{float32(math.NaN()), 0}, 1); err == nil {
		t.Error("a NaN gradient gave no error")
	}
	if _, err := a.Step([]float32{0}, []float32{0, 0}, 1); err == nil {
		t.Error("mismatched lengths gave no error")
	}
}

func TestConfigValidation(t *testing.T) {
	base := DefaultConfig([]string{"de", "en"})
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no languages", func(c *Config) { c.Languages = nil }, "Languages is empty"},
		{"duplicate language", func(c *Config) { c.Languages = []string{"de", "de"} }, `lists "de" twice`},
		{"empty language", func(c *Config) { c.Languages = []string{"de", ""} }, "Languages[1]"},
		{"zero segments", func(c *Config) { c.Segments = 0 }, "Segments is 0"},
		{"no encoder", func(c *Config) { c.EncoderHidden = nil }, "len(EncoderHidden)"},
		{"negative width", func(c *Config) { c.EncoderHidden = []int{64, -1} }, "EncoderHidden[1] is -1"},
		{"one unit", func(c *Config) { c.Units = 1 }, "Units is 1"},
		{"short sequences", func(c *Config) { c.MaxUnits = 1 }, "MaxUnits is 1"},
		{"huge", func(c *Config) { c.EncoderHidden = []int{16384, 16384, 16384, 16384, 16384} }, "parameters"},
		{"bad duration weight", func(c *Config) { c.DurationWeight = -1 }, "DurationWeight"},
		{"unknown vocoder", func(c *Config) { c.Vocoder = "wavenet" }, `Config.Vocoder: vocoder "wavenet"`},
		{"bad mel", func(c *Config) { c.Features.Mel = audio.MelConfig{SampleRate: 16000, NFFT: 64, NMels: 80} }, "Features"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.EncoderHidden = slices.Clone(base.EncoderHidden)
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if _, err := New(c, &units.Codebook{K: 2, Dim: 80, Centroids: make([]float32, 160)}); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	if _, err := New(base, &units.Codebook{K: 64, Dim: 80, Centroids: make([]float32, 64*80)}); err == nil || !strings.Contains(err.Error(), "Units is 128") {
		t.Errorf("codebook of the wrong size: err = %v", err)
	}
}

func TestTranslateRejectsBadInputBeforeWork(t *testing.T) {
	m, _, tc := toySetup(t, nil)
	good := Input{Audio: tc.say(0, 0, 1, 1), TargetLang: "bb"}
	for _, c := range []struct {
		name string
		ins  []Input
		opt  DecodeOptions
		want string
	}{
		{"unknown language", []Input{good, {Audio: good.Audio, TargetLang: "zz"}}, DecodeOptions{}, `input 1: model: unknown language "zz": the model knows aa bb cc`},
		{"empty audio", []Input{{Audio: audio.Clip{Rate: 16000}, TargetLang: "aa"}}, DecodeOptions{}, "audio is empty"},
		{"beam too wide", []Input{good}, DecodeOptions{Beam: 1000}, "Beam is 1000"},
		{"unknown vocoder", []Input{good}, DecodeOptions{Vocoder: "wavenet"}, `vocoder "wavenet"`},
		{"negative seconds", []Input{good}, DecodeOptions{MaxSeconds: -1}, "MaxSeconds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Translate(context.Background(), c.ins, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	var ule *UnknownLanguageError
	_, err := m.Translate(context.Background(), []Input{{Audio: good.Audio, TargetLang: "zz"}}, DecodeOptions{})
	if !errors.As(err, &ule) || !slices.Equal(ule.Known, []string{"aa", "bb", "cc"}) {
		t.Errorf("err = %v, want an *UnknownLanguageError listing aa bb cc", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Translate(ctx, []Input{good}, DecodeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
}

func TestDecodeOptions(t *testing.T) {
	m, exs, _ := toySetup(t, nil)
	for _, tc := range []struct {
		name string
		opt  DecodeOptions
	}{
		{"greedy", DecodeOptions{}},
		{"beam 1", DecodeOptions{Beam: 1}},
		{"beam 4", DecodeOptions{Beam: 4}},
		{"capped", DecodeOptions{Beam: 3, MaxSeconds: 0.05}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := m.Decode(exs[0].Input, 1, tc.opt)
			if len(seq.Units)+1 > m.Config().MaxUnits {
				t.Errorf("%d units: over MaxUnits", len(seq.Units))
			}
			for i, u := range seq.Units {
				if i > 0 && u == seq.Units[i-1] {
					t.Errorf("unit %d repeats its predecessor", i)
				}
				if seq.Durations[i] < 1 || seq.Durations[i] > m.Config().MaxDuration {
					t.Errorf("duration %d out of range", seq.Durations[i])
				}
			}
			if tc.opt.MaxSeconds > 0 {
				// 0.05 s at 10 ms hops and stride 2 is 2 unit frames; the
				// unit that crosses the bound is kept.
				if f := seq.Frames(); f > 2+m.Config().MaxDuration {
					t.Errorf("%d unit frames for a 0.05 s cap", f)
				}
			}
		})
	}
	// Greedy is the beam of width 1.
	if g, b := m.Decode(exs[5].Input, 2, DecodeOptions{}), m.Decode(exs[5].Input, 2, DecodeOptions{Beam: 1}); !slices.Equal(g.Units, b.Units) {
		t.Errorf("greedy %v != beam 1 %v", g.Units, b.Units)
	}
}

// The batched greedy decoder gives every row exactly the sequence Decode
// gives it alone, for mixed target languages and output caps, and
// Translate's outputs do not depend on how the inputs are batched.
func TestDecodeGreedyBatchMatchesDecode(t *testing.T) {
	m, exs, tc := toySetup(t, nil)
	var xs [][]float32
	var langs []int
	for i := range min(len(exs), 11) {
		xs = append(xs, exs[i].Input)
		langs = append(langs, i%len(m.Config().Languages))
	}
	for _, secs := range []float64{0, 0.05, 0.3} {
		opt := DecodeOptions{MaxSeconds: secs}
		got := m.decodeGreedyBatch(xs, langs, m.maxFrames(opt))
		total := 0
		for _, g := range got {
			total += len(g.Units)
		}
		if total < len(xs) {
			t.Fatalf("cap %gs: %d units for %d rows: the comparison would be empty", secs, total, len(xs))
		}
		for i := range xs {
			want := m.Decode(xs[i], langs[i], opt)
			if !slices.Equal(got[i].Units, want.Units) || !slices.Equal(got[i].Durations, want.Durations) {
				t.Errorf("cap %gs, row %d: batch %v %v, alone %v %v", secs, i, got[i].Units, got[i].Durations, want.Units, want.Durations)
			}
		}
	}
	var ins []Input
	for l := range tc.langs {
		for p := range tc.phrases {
			ins = append(ins, Input{Audio: tc.say(l, p, 1, 1), TargetLang: tc.langs[(l+1)%len(tc.langs)]})
		}
	}
	batch, err := m.Translate(t.Context(), ins, DecodeOptions{Vocoder: VocoderLoops})
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		one, err := m.Translate(t.Context(), []Input{in}, DecodeOptions{Vocoder: VocoderLoops})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(one[0].Units.Units, batch[i].Units.Units) || !slices.Equal(one[0].Audio.Samples, batch[i].Audio.Samples) {
			t.Errorf("input %d: alone and in a batch of %d differ", i, len(ins))
		}
	}
}

// A new decay end past warmup keeps the learning rate continuous: longer
// slows the rest of the cosine, shorter speeds it up, at or before now
// drops to the floor; the anchor survives MarshalBinary, and a version-1
// state (no anchor) still loads.
func TestAdamDecayAnchor(t *testing.T) {
	cfg := AdamConfig{LR: 1, Beta1: 0.9, Beta2: 0.99, Epsilon: 1e-8, WarmupSteps: 10, DecaySteps: 110, MinLRFraction: 0.1}
	steps := func(a *Adam, n int) []float64 {
		var lrs []float64
		for range n {
			st, err := a.Step([]float32{0}, []float32{1}, 1)
			if err != nil {
				t.Fatal(err)
			}
			lrs = append(lrs, st.LR)
		}
		return lrs
	}
	a, err := NewAdam(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	a.SetDecaySteps(110) // in warmup: no anchor, the plain schedule
	steps(a, 60)
	if got := a.LR(); math.Abs(got-0.55) > 1e-9 {
		t.Fatalf("LR at step 60 = %g, want 0.55", got)
	}
	a.SetDecaySteps(210)
	if got := a.LR(); math.Abs(got-0.55) > 1e-9 {
		t.Fatalf("LR right after lengthening the plan = %g, want 0.55 still", got)
	}
	blob, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	lrs := steps(a, 160)
	for i := 1; i < len(lrs); i++ {
		if lrs[i] > lrs[i-1]+1e-12 {
			t.Fatalf("LR rose from %g to %g at step %d", lrs[i-1], lrs[i], 60+i)
		}
	}
	if got := lrs[150]; math.Abs(got-0.1) > 1e-9 { // step 210
		t.Errorf("LR at the new end = %g, want the floor 0.1", got)
	}
	var b Adam
	if err := b.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	if again := steps(&b, 160); !slices.Equal(again, lrs) {
		t.Error("a restored optimizer follows another schedule")
	}

	c, _ := NewAdam(cfg, 1)
	steps(c, 80)
	before := c.LR()
	c.SetDecaySteps(100)
	if got := c.LR(); math.Abs(got-before) > 1e-9 {
		t.Errorf("LR right after shortening = %g, want %g", got, before)
	}
	if got := steps(c, 21)[20]; math.Abs(got-0.1) > 1e-9 {
		t.Errorf("LR at the shortened end = %g, want 0.1", got)
	}
	c.SetDecaySteps(50)
	if got := c.LR(); got != 0.1 {
		t.Errorf("LR after a plan that ended already = %g, want 0.1", got)
	}

	// Version 1: the same header without the anchor fields.
	d, _ := NewAdam(cfg, 1)
	steps(d, 30)
	v2, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(adamMagic) + 9*8
	v1 := slices.Concat([]byte(adamMagicV1), v2[len(adamMagic):hdr], v2[hdr+16:])
	var e Adam
	if err := e.UnmarshalBinary(v1); err != nil {
		t.Fatal(err)
	}
	if e.LR() != d.LR() || e.Steps() != 30 {
		t.Errorf("version-1 state: LR %g at step %d, want %g at 30", e.LR(), e.Steps(), d.LR())
	}
	bad := slices.Clone(v2)
	binary.LittleEndian.PutUint64(bad[hdr:], 99) // anchor after the step
	if err := e.UnmarshalBinary(bad); err == nil {
		t.Error("an anchor past the step count loaded")
	}
}
