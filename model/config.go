package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"babelfish.dev/babelfish/model/features"
)

// Config is a model's shape. It is saved with the weights.
type Config struct {
	// Languages the model translates into (and from), in embedding order.
	Languages []string `json:"languages"`
	// Features is the front end; its mel bands are the codebook's dims.
	Features features.Config `json:"features"`
	// Segments is how many time spans the encoder pools the source into.
	Segments int `json:"segments"`
	// InputCepstra, when positive, feeds the encoder mel cepstra c1..cN
	// (smoothing away pitch harmonics, which differ between voices)
	// instead of log-mel bands.
	InputCepstra int `json:"input_cepstra,omitempty"`
	// EncoderHidden are the encoder MLP's layer widths; the last is the
	// encoding's size.
	EncoderHidden []int `json:"encoder_hidden"`
	// ContextHidden is the width of the per-utterance context layer that
	// joins the encoding with the target-language embedding.
	ContextHidden int `json:"context_hidden"`
	// DecoderHidden is the decoder's per-position width and DecoderLayers
	// the number of hidden layers after its input layer.
	DecoderHidden int `json:"decoder_hidden"`
	DecoderLayers int `json:"decoder_layers"`
	// Units is the codebook size K; UnitStride is how many 10 ms analysis
	// frames one unit frame spans.
	Units      int `json:"units"`
	UnitStride int `json:"unit_stride"`
	// MaxUnits bounds a target sequence, end marker included.
	MaxUnits int `json:"max_units"`
	// MaxDuration is the longest duration class, in unit frames; longer
	// runs are clipped to it.
	MaxDuration int `json:"max_duration"`
	// DurationWeight weights the duration loss against the unit loss.
	DurationWeight float64 `json:"duration_weight"`
	// PrevDropout is the training-time probability of hiding the previous
	// unit from the decoder (it sees a mask token instead), so the decoder
	// learns to follow the source rather than continue the teacher-forced
	// prefix. 1 makes the decoder non-autoregressive in effect.
	PrevDropout float64 `json:"prev_dropout"`
	// Smooth is the vocoder's smoothing half-width in analysis frames and
	// GriffinLimIterations its inversion effort.
	Smooth               int `json:"smooth"`
	GriffinLimIterations int `json:"griffin_lim_iterations"`
	// Vocoder is how units become a waveform: VocoderGriffinLim (the
	// default, and what a config without the field means) runs
	// Griffin-Lim per output; VocoderLoops renders each unit once per
	// model as a seamless loop and cross-fades them, an order of
	// magnitude cheaper per output.
	Vocoder string `json:"vocoder,omitempty"`
	// Seed drives weight initialisation.
	Seed uint64 `json:"seed"`
}

// DefaultConfig is the shape measured to fit a 60-minute CPU budget on the
// synthetic corpus (see cmd/s2st-experiment), for the given languages.
func DefaultConfig(langs []string) Config {
	return Config{
		Languages:            slices.Clone(langs),
		Segments:             20,
		InputCepstra:         20,
		EncoderHidden:        []int{512, 512},
		ContextHidden:        512,
		DecoderHidden:        256,
		DecoderLayers:        1,
		Units:                128,
		UnitStride:           2,
		MaxUnits:             64,
		MaxDuration:          12,
		DurationWeight:       0.5,
		PrevDropout:          0.5,
		Smooth:               1,
		GriffinLimIterations: 32,
		Seed:                 1,
	}
}

// Vocoders (Config.Vocoder).
const (
	VocoderGriffinLim = "griffin-lim"
	VocoderLoops      = "loops"
)

// CheckVocoder accepts a vocoder kind: VocoderGriffinLim, VocoderLoops, or
// empty (a model's own; for a Config, Griffin-Lim). Every place that takes
// a kind from a user checks it here, before any work.
func CheckVocoder(kind string) error {
	switch kind {
	case "", VocoderGriffinLim, VocoderLoops:
		return nil
	}
	return fmt.Errorf("vocoder %q: want %q or %q (or empty: the model's own)", kind, VocoderGriffinLim, VocoderLoops)
}

// Limits on shapes, so a bad config fails before any allocation.
const (
	maxLanguages = 4096
	maxWidth     = 1 << 14
	maxSegments  = 1024
	maxUnits     = 1 << 14
	maxSeqLen    = 1 << 14
	maxLayers    = 16
	maxParams    = 1 << 30
)

// Validate checks every field, naming the bad one and its limit.
func (c Config) Validate() error {
	if len(c.Languages) == 0 {
		return errors.New("model: Config.Languages is empty: want at least one language")
	}
	if len(c.Languages) > maxLanguages {
		return fmt.Errorf("model: Config.Languages has %d entries: want at most %d", len(c.Languages), maxLanguages)
	}
	seen := map[string]bool{}
	for i, l := range c.Languages {
		if l == "" || strings.ContainsAny(l, " \t\n/") {
			return fmt.Errorf("model: Config.Languages[%d] is %q: want a language code", i, l)
		}
		if seen[l] {
			return fmt.Errorf("model: Config.Languages lists %q twice", l)
		}
		seen[l] = true
	}
	f := c.Features.WithDefaults()
	if _, err := features.NewFrontend(f); err != nil {
		return fmt.Errorf("model: Config.Features: %w", err)
	}
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("model: Config.%s is %d: want %d..%d", name, v, lo, hi)
		}
		return nil
	}
	if err := errors.Join(
		check("Segments", c.Segments, 1, maxSegments),
		check("InputCepstra", c.InputCepstra, 0, f.Mel.NMels-1),
		check("len(EncoderHidden)", len(c.EncoderHidden), 1, maxLayers),
		check("ContextHidden", c.ContextHidden, 1, maxWidth),
		check("DecoderHidden", c.DecoderHidden, 1, maxWidth),
		check("DecoderLayers", c.DecoderLayers, 0, maxLayers),
		check("Units", c.Units, 2, maxUnits),
		check("UnitStride", c.UnitStride, 1, 64),
		check("MaxUnits", c.MaxUnits, 2, maxSeqLen),
		check("MaxDuration", c.MaxDuration, 1, 1024),
		check("Smooth", c.Smooth, 0, 64),
		check("GriffinLimIterations", c.GriffinLimIterations, 1, 10000),
	); err != nil {
		return err
	}
	for i, w := range c.EncoderHidden {
		if err := check(fmt.Sprintf("EncoderHidden[%d]", i), w, 1, maxWidth); err != nil {
			return err
		}
	}
	if err := CheckVocoder(c.Vocoder); err != nil {
		return fmt.Errorf("model: Config.Vocoder: %w", err)
	}
	if c.DurationWeight < 0 || c.DurationWeight > 100 {
		return fmt.Errorf("model: Config.DurationWeight is %g: want 0..100", c.DurationWeight)
	}
	if c.PrevDropout < 0 || c.PrevDropout > 1 {
		return fmt.Errorf("model: Config.PrevDropout is %g: want 0..1", c.PrevDropout)
	}
	if n := c.paramCount(); n > maxParams {
		return fmt.Errorf("model: config has %d parameters: want at most %d", n, maxParams)
	}
	return nil
}

// NMels is the number of mel bands the front end yields.
func (c Config) NMels() int { return c.Features.WithDefaults().Mel.NMels }

// InputDims is the width of one encoder input segment: InputCepstra, or
// the mel bands.
func (c Config) InputDims() int {
	if c.InputCepstra > 0 {
		return c.InputCepstra
	}
	return c.NMels()
}

// InputSize is the encoder's input width: Segments x InputDims.
func (c Config) InputSize() int { return c.Segments * c.InputDims() }

// maxLayerInput is the widest input of any inference layer.
func (c Config) maxLayerInput() int {
	return max(c.InputSize(), slices.Max(c.EncoderHidden), c.ContextHidden, c.DecoderHidden)
}

// LangIndex returns the embedding index of lang, or an error listing the
// known languages.
func (c Config) LangIndex(lang string) (int, error) {
	if i := slices.Index(c.Languages, lang); i >= 0 {
		return i, nil
	}
	return 0, &UnknownLanguageError{Lang: lang, Known: slices.Clone(c.Languages)}
}

// UnknownLanguageError is returned for a language the model does not know.
type UnknownLanguageError struct {
	Lang  string
	Known []string
}

func (e *UnknownLanguageError) Error() string {
	return fmt.Sprintf("model: unknown language %q: the model knows %s", e.Lang, strings.Join(e.Known, " "))
}

// paramCount is the number of weights the config implies, computed in
// int64-safe steps so absurd shapes cannot overflow.
func (c Config) paramCount() int {
	total := 0
	for _, s := range c.paramShapes() {
		n := 1
		for _, d := range s.Shape {
			n *= d
			if n > maxParams {
				return maxParams + 1
			}
		}
		total += n
		if total > maxParams {
			return maxParams + 1
		}
	}
	return total
}

// paramSpec is one weight tensor's name and shape.
type paramSpec struct {
	Name  string
	Shape []int
}

// The decoder's vocabulary: units 0..K-1, then the end marker; the
// previous-unit embedding adds a begin marker and a mask (dropped previous
// unit) after it.
func (c Config) eos() int  { return c.Units }
func (c Config) bos() int  { return c.Units + 1 }
func (c Config) mask() int { return c.Units + 2 }

// paramShapes lists every weight tensor in a fixed order: the order of the
// flat parameter and gradient vectors.
func (c Config) paramShapes() []paramSpec {
	var out []paramSpec
	in := c.InputSize()
	for i, w := range c.EncoderHidden {
		out = append(out,
			paramSpec{fmt.Sprintf("enc.%d.w", i), []int{in, w}},
			paramSpec{fmt.Sprintf("enc.%d.b", i), []int{1, w}})
		in = w
	}
	h, hc := c.DecoderHidden, c.ContextHidden
	out = append(out,
		paramSpec{"ctx.w", []int{in, hc}},
		paramSpec{"ctx.b", []int{1, hc}},
		paramSpec{"ctx.lang", []int{len(c.Languages), hc}},
		paramSpec{"dec.add.w", []int{hc, h}},
		paramSpec{"dec.add.b", []int{1, h}},
		paramSpec{"dec.gate.w", []int{hc, h}},
		paramSpec{"dec.gate.b", []int{1, h}},
		paramSpec{"dec.prev", []int{c.Units + 3, h}},
		paramSpec{"dec.pos", []int{c.MaxUnits, h}},
		paramSpec{"dec.posgate", []int{c.MaxUnits, h}})
	for i := range c.DecoderLayers {
		out = append(out,
			paramSpec{fmt.Sprintf("dec.%d.w", i), []int{h, h}},
			paramSpec{fmt.Sprintf("dec.%d.b", i), []int{1, h}})
	}
	out = append(out,
		paramSpec{"dec.unit.w", []int{h, c.Units + 1}},
		paramSpec{"dec.unit.b", []int{1, c.Units + 1}},
		paramSpec{"dec.dur.w", []int{h, c.MaxDuration}},
		paramSpec{"dec.dur.b", []int{1, c.MaxDuration}})
	return out
}
