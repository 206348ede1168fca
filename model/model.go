package model

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model/features"
	"babelfish.dev/babelfish/model/units"
)

// Model is a speech-to-speech translation model: config, weights and unit
// codebook. Its methods are safe for concurrent use as long as nobody
// writes the weights meanwhile (training goes through Graph and the
// optimizer, never during Translate).
type Model struct {
	cfg      Config
	params   *Params
	codebook *units.Codebook
	front    *features.Frontend
	cepstra  *features.Cepstrum // c1..cN when Config.InputCepstra > 0

	loopsMu sync.Mutex
	loops   *units.Loops // built on first use by a loops vocoder
}

// New validates cfg and the codebook (K = cfg.Units, dims = mel bands) and
// returns a model with weights initialised from cfg.Seed.
func New(cfg Config, cb *units.Codebook) (*Model, error) {
	m, err := newModel(cfg, cb)
	if err != nil {
		return nil, err
	}
	m.params.init(cfg.Seed)
	return m, nil
}

func newModel(cfg Config, cb *units.Codebook) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cb == nil {
		return nil, errors.New("model: no unit codebook: learn one with units.KMeans over target speech")
	}
	if err := cb.Validate(); err != nil {
		return nil, err
	}
	if cb.K != cfg.Units || cb.Dim != cfg.NMels() {
		return nil, fmt.Errorf("model: codebook is %d x %d: Config.Units is %d and the front end has %d mel bands", cb.K, cb.Dim, cfg.Units, cfg.NMels())
	}
	cfg.Features = cfg.Features.WithDefaults()
	front, err := features.NewFrontend(cfg.Features)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, params: newParams(cfg), codebook: cb, front: front}
	if n := cfg.InputCepstra; n > 0 {
		m.cepstra = features.NewCepstrum(cfg.NMels(), 1, n+1)
	}
	return m, nil
}

// Config is the model's configuration (defaults filled in).
func (m *Model) Config() Config { return m.cfg }

// Params are the model's weights. Writing them while Translate runs is a
// data race.
func (m *Model) Params() *Params { return m.params }

// Codebook is the model's unit codebook.
func (m *Model) Codebook() *units.Codebook { return m.codebook }

// Frontend is the model's feature front end.
func (m *Model) Frontend() *features.Frontend { return m.front }

// Languages lists the languages the model translates into.
func (m *Model) Languages() []string { return append([]string(nil), m.cfg.Languages...) }

// Vocoder is the model's unit vocoder, the one Config.Vocoder names.
func (m *Model) Vocoder(ctx context.Context) (*units.Vocoder, error) {
	return m.VocoderOf(ctx, m.cfg.Vocoder)
}

// VocoderOf is the model's unit vocoder of the given kind (a Config.Vocoder
// value; empty: the model's own), so one checkpoint can be heard, and
// evaluated, through either. The first loops vocoder renders the
// codebook's loops (about half a CPU second for 128 units); later ones
// share them.
func (m *Model) VocoderOf(ctx context.Context, kind string) (*units.Vocoder, error) {
	if err := CheckVocoder(kind); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if kind == "" {
		kind = m.cfg.Vocoder
	}
	v := &units.Vocoder{
		Codebook:   m.codebook,
		Stride:     m.cfg.UnitStride,
		Smooth:     m.cfg.Smooth,
		Analyzer:   m.front.Analyzer(),
		GriffinLim: audio.GriffinLimConfig{Iterations: m.cfg.GriffinLimIterations},
	}
	switch kind {
	case "", VocoderGriffinLim:
		return v, nil
	}
	m.loopsMu.Lock()
	defer m.loopsMu.Unlock()
	if m.loops == nil {
		l, err := units.NewLoops(ctx, m.codebook, m.front.Analyzer(), units.LoopsConfig{GriffinLim: audio.GriffinLimConfig{Seed: m.cfg.Seed}})
		if err != nil {
			return nil, err
		}
		m.loops = l
	}
	v.Loops = m.loops
	return v, nil
}

// EncoderInput turns trimmed log-mel frames of source speech into the
// encoder's input: optionally mel cepstra, normalised, then pooled into
// Config.Segments spans.
func (m *Model) EncoderInput(logMel audio.Spectrogram) ([]float32, error) {
	if logMel.Bins != m.cfg.NMels() {
		return nil, fmt.Errorf("model: source has %d mel bands: the model takes %d", logMel.Bins, m.cfg.NMels())
	}
	if logMel.Frames == 0 {
		return nil, errors.New("model: source speech has no frames")
	}
	if m.cepstra != nil {
		logMel = m.cepstra.Apply(logMel)
	}
	return features.Pool(features.Normalize(logMel), m.cfg.Segments), nil
}

// TargetSequence turns trimmed log-mel frames of target speech into the
// unit sequence the decoder learns, durations clipped to MaxDuration. A
// sequence that does not fit MaxUnits (end marker included) is an error.
func (m *Model) TargetSequence(logMel audio.Spectrogram) (units.Sequence, error) {
	seq, err := m.codebook.Encode(logMel, m.cfg.UnitStride)
	if err != nil {
		return units.Sequence{}, err
	}
	if len(seq.Units)+1 > m.cfg.MaxUnits {
		return units.Sequence{}, fmt.Errorf("model: target has %d units: Config.MaxUnits %d allows %d plus the end marker", len(seq.Units), m.cfg.MaxUnits, m.cfg.MaxUnits-1)
	}
	for i, d := range seq.Durations {
		seq.Durations[i] = min(d, m.cfg.MaxDuration)
	}
	return seq, nil
}

// Example is one training pair: the encoder input of a source utterance,
// the target language's index and the target's unit sequence.
type Example struct {
	Input  []float32
	Target int
	Units  units.Sequence
	// Seed draws this example's training noise (previous-unit dropout).
	// Set it from the sample's place in the global data order, so ranks
	// that split a batch draw what one rank with the whole batch would.
	Seed uint64
}

// NewExample checks and assembles a training pair.
func (m *Model) NewExample(input []float32, targetLang string, seq units.Sequence) (Example, error) {
	li, err := m.cfg.LangIndex(targetLang)
	if err != nil {
		return Example{}, err
	}
	ex := Example{Input: input, Target: li, Units: seq}
	return ex, m.checkExample(ex)
}

func (m *Model) checkExample(ex Example) error {
	c := m.cfg
	switch {
	case len(ex.Input) != c.InputSize():
		return fmt.Errorf("model: example input has %d values: want Segments x InputDims = %d", len(ex.Input), c.InputSize())
	case ex.Target < 0 || ex.Target >= len(c.Languages):
		return fmt.Errorf("model: example target language index %d: want 0..%d", ex.Target, len(c.Languages)-1)
	case len(ex.Units.Units) != len(ex.Units.Durations):
		return fmt.Errorf("model: example has %d units and %d durations", len(ex.Units.Units), len(ex.Units.Durations))
	case len(ex.Units.Units)+1 > c.MaxUnits:
		return fmt.Errorf("model: example has %d units: Config.MaxUnits %d allows %d plus the end marker", len(ex.Units.Units), c.MaxUnits, c.MaxUnits-1)
	}
	for i, u := range ex.Units.Units {
		if u < 0 || u >= c.Units {
			return fmt.Errorf("model: example unit %d at %d: want 0..%d", u, i, c.Units-1)
		}
		if d := ex.Units.Durations[i]; d < 1 || d > c.MaxDuration {
			return fmt.Errorf("model: example duration %d at %d: want 1..%d (Config.MaxDuration)", d, i, c.MaxDuration)
		}
	}
	return nil
}
