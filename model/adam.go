package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// AdamConfig configures the optimizer and its learning-rate schedule:
// linear warmup from 0 to LR over WarmupSteps, then cosine decay to
// LR*MinLRFraction at DecaySteps (counted from step 0), flat after.
type AdamConfig struct {
	LR            float64 `json:"lr"`
	Beta1         float64 `json:"beta1"`
	Beta2         float64 `json:"beta2"`
	Epsilon       float64 `json:"epsilon"`
	WarmupSteps   int64   `json:"warmup_steps"`
	DecaySteps    int64   `json:"decay_steps"`
	MinLRFraction float64 `json:"min_lr_fraction"`
	// ClipNorm bounds the global L2 norm of the (scaled) gradient; 0
	// disables clipping.
	ClipNorm float64 `json:"clip_norm"`
}

// DefaultAdamConfig is the schedule the experiments use.
func DefaultAdamConfig() AdamConfig {
	return AdamConfig{LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, WarmupSteps: 200, DecaySteps: 10000, MinLRFraction: 0.05, ClipNorm: 1}
}

// Validate checks the fields.
func (c AdamConfig) Validate() error {
	switch {
	case !(c.LR > 0 && c.LR < 10):
		return fmt.Errorf("model: AdamConfig.LR is %g: want 0 < LR < 10", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("model: AdamConfig.Beta1 is %g: want 0 <= Beta1 < 1", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("model: AdamConfig.Beta2 is %g: want 0 <= Beta2 < 1", c.Beta2)
	case !(c.Epsilon > 0):
		return fmt.Errorf("model: AdamConfig.Epsilon is %g: want > 0", c.Epsilon)
	case c.WarmupSteps < 0 || c.DecaySteps < 0:
		return fmt.Errorf("model: AdamConfig warmup %d / decay %d steps: want >= 0", c.WarmupSteps, c.DecaySteps)
	case !(c.MinLRFraction >= 0 && c.MinLRFraction <= 1):
		return fmt.Errorf("model: AdamConfig.MinLRFraction is %g: want 0..1", c.MinLRFraction)
	case !(c.ClipNorm >= 0):
		return fmt.Errorf("model: AdamConfig.ClipNorm is %g: want >= 0", c.ClipNorm)
	}
	return nil
}

// Adam is the Adam optimizer over a flat parameter vector. Its whole state
// (config, step, moments) round-trips through MarshalBinary, so a resumed
// run continues bit for bit.
type Adam struct {
	cfg  AdamConfig
	step int64
	m, v []float32
	// The decay anchor: from update anchorStep on, the cosine's progress
	// runs from anchorFrac to 1 at DecaySteps (see SetDecaySteps).
	anchorStep int64
	anchorFrac float64
}

// NewAdam returns an optimizer for n parameters.
func NewAdam(cfg AdamConfig, n int) (*Adam, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("model: Adam over %d parameters: want >= 1", n)
	}
	return &Adam{cfg: cfg, m: make([]float32, n), v: make([]float32, n)}, nil
}

// Config is the optimizer's configuration.
func (a *Adam) Config() AdamConfig { return a.cfg }

// SetDecaySteps changes where the cosine decay ends, for trainers that
// learn their step budget from measured speed. Past warmup the change
// keeps the learning rate continuous: the decay's progress so far is
// anchored at the current step and the rest of it is spread over the steps
// up to n, so a longer plan slows the decay instead of raising the rate and
// a shorter one speeds it up (n at or before the current step: the floor).
func (a *Adam) SetDecaySteps(n int64) {
	if a.step > a.cfg.WarmupSteps {
		a.anchorFrac, a.anchorStep = a.progress(a.step), a.step
	}
	a.cfg.DecaySteps = max(0, n)
}

// progress is how far the cosine decay is at update step+1, 0 to 1.
func (a *Adam) progress(step int64) float64 {
	c := a.cfg
	if a.anchorStep > 0 && step >= a.anchorStep {
		if c.DecaySteps <= a.anchorStep {
			return 1
		}
		return a.anchorFrac + (1-a.anchorFrac)*math.Min(1, float64(step-a.anchorStep)/float64(c.DecaySteps-a.anchorStep))
	}
	if step < c.WarmupSteps || c.DecaySteps <= c.WarmupSteps {
		return 0
	}
	return math.Min(1, float64(step-c.WarmupSteps)/float64(c.DecaySteps-c.WarmupSteps))
}

// LR is the learning rate of the next update.
func (a *Adam) LR() float64 { return a.lrAt(a.step) }

// lrAt is AdamConfig.LRAt with the decay anchor.
func (a *Adam) lrAt(step int64) float64 {
	c := a.cfg
	if a.anchorStep == 0 || step < a.anchorStep {
		return c.LRAt(step)
	}
	lo := c.LR * c.MinLRFraction
	return lo + (c.LR-lo)*0.5*(1+math.Cos(math.Pi*a.progress(step)))
}

// Steps is the number of updates taken.
func (a *Adam) Steps() int64 { return a.step }

// LRAt is the learning rate of update number step+1 (step counted from 0).
func (c AdamConfig) LRAt(step int64) float64 {
	s := float64(step + 1)
	if c.WarmupSteps > 0 && step < c.WarmupSteps {
		return c.LR * s / float64(c.WarmupSteps)
	}
	if c.DecaySteps <= c.WarmupSteps {
		return c.LR
	}
	frac := math.Min(1, float64(step-c.WarmupSteps)/float64(c.DecaySteps-c.WarmupSteps))
	lo := c.LR * c.MinLRFraction
	return lo + (c.LR-lo)*0.5*(1+math.Cos(math.Pi*frac))
}

// StepStats describe one update.
type StepStats struct {
	LR float64
	// GradNorm is the global norm of the scaled gradient before clipping.
	GradNorm float64
	Clipped  bool
}

// Step updates params in place from the gradient grads*scale (scale is
// typically 1/global example count, turning summed gradients into means).
// grads is not modified. Every rank that calls Step with the same
// all-reduced gradient makes the same update.
func (a *Adam) Step(params, grads []float32, scale float64) (StepStats, error) {
	if len(params) != len(a.m) || len(grads) != len(a.m) {
		return StepStats{}, fmt.Errorf("model: Adam step over %d params and %d grads: the optimizer holds %d", len(params), len(grads), len(a.m))
	}
	var ss float64
	for _, g := range grads {
		ss += float64(g) * float64(g)
	}
	norm := math.Sqrt(ss) * math.Abs(scale)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return StepStats{GradNorm: norm}, fmt.Errorf("model: gradient norm is %g", norm)
	}
	st := StepStats{LR: a.lrAt(a.step), GradNorm: norm}
	g := scale
	if a.cfg.ClipNorm > 0 && norm > a.cfg.ClipNorm {
		g *= a.cfg.ClipNorm / norm
		st.Clipped = true
	}
	a.step++
	b1, b2 := a.cfg.Beta1, a.cfg.Beta2
	c1 := 1 - math.Pow(b1, float64(a.step))
	c2 := 1 - math.Pow(b2, float64(a.step))
	lr := float32(st.LR * math.Sqrt(c2) / c1)
	eps := float32(a.cfg.Epsilon * math.Sqrt(c2))
	gs, fb1, fb2 := float32(g), float32(b1), float32(b2)
	for i, gr := range grads {
		x := gr * gs
		m := fb1*a.m[i] + (1-fb1)*x
		v := fb2*a.v[i] + (1-fb2)*x*x
		a.m[i], a.v[i] = m, v
		params[i] -= lr * m / (float32(math.Sqrt(float64(v))) + eps)
	}
	return st, nil
}

// Adam state formats: version 1 has no decay anchor (read as none).
const (
	adamMagicV1 = "BFADAM\x00\x01"
	adamMagic   = "BFADAM\x00\x02"
)

// MarshalBinary encodes config, step, decay anchor and moments
// (little-endian).
func (a *Adam) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(adamMagic)
	hdr := []any{a.cfg.LR, a.cfg.Beta1, a.cfg.Beta2, a.cfg.Epsilon, a.cfg.WarmupSteps, a.cfg.DecaySteps, a.cfg.MinLRFraction, a.cfg.ClipNorm, a.step, a.anchorStep, a.anchorFrac, int64(len(a.m))}
	for _, v := range hdr {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			return nil, err
		}
	}
	if err := binary.Write(&b, binary.LittleEndian, a.m); err != nil {
		return nil, err
	}
	if err := binary.Write(&b, binary.LittleEndian, a.v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// UnmarshalBinary restores state written by MarshalBinary.
func (a *Adam) UnmarshalBinary(data []byte) error {
	r := bytes.NewReader(data)
	magic := make([]byte, len(adamMagic))
	if _, err := io.ReadFull(r, magic); err != nil || (string(magic) != adamMagic && string(magic) != adamMagicV1) {
		return errors.New("model: not an Adam state (bad magic or version)")
	}
	var cfg AdamConfig
	var step, n, anchorStep int64
	var anchorFrac float64
	fields := []any{&cfg.LR, &cfg.Beta1, &cfg.Beta2, &cfg.Epsilon, &cfg.WarmupSteps, &cfg.DecaySteps, &cfg.MinLRFraction, &cfg.ClipNorm, &step, &anchorStep, &anchorFrac, &n}
	if string(magic) == adamMagicV1 {
		fields = append(fields[:9:9], &n)
	}
	for _, p := range fields {
		if err := binary.Read(r, binary.LittleEndian, p); err != nil {
			return fmt.Errorf("model: Adam state header: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("model: Adam state: %w", err)
	}
	if n < 1 || step < 0 || int64(r.Len()) != 8*n {
		return fmt.Errorf("model: Adam state claims %d parameters at step %d with %d bytes left: want %d bytes", n, step, r.Len(), 8*n)
	}
	m, v := make([]float32, n), make([]float32, n)
	if err := binary.Read(r, binary.LittleEndian, m); err != nil {
		return err
	}
	if err := binary.Read(r, binary.LittleEndian, v); err != nil {
		return err
	}
	if anchorStep < 0 || anchorStep > step || !(anchorFrac >= 0 && anchorFrac <= 1) {
		return fmt.Errorf("model: Adam state decay anchor at step %d, progress %g: want 0..%d and 0..1", anchorStep, anchorFrac, step)
	}
	a.cfg, a.step, a.m, a.v, a.anchorStep, a.anchorFrac = cfg, step, m, v, anchorStep, anchorFrac
	return nil
}
