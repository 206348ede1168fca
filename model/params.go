package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Tensor is one named weight tensor: a row-major view into Params.Flat.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Params are a model's weights: named tensors laid end to end in one flat
// vector, in the config's fixed order. The trainer all-reduces and
// checkpoints Flat; gradients use the same layout.
type Params struct {
	Tensors []Tensor
	Flat    []float32
}

// newParams allocates the tensors of cfg (zeroed).
func newParams(cfg Config) *Params {
	specs := cfg.paramShapes()
	n := 0
	for _, s := range specs {
		n += shapeSize(s.Shape)
	}
	p := &Params{Flat: make([]float32, n)}
	off := 0
	for _, s := range specs {
		sz := shapeSize(s.Shape)
		p.Tensors = append(p.Tensors, Tensor{Name: s.Name, Shape: slices.Clone(s.Shape), Data: p.Flat[off : off+sz : off+sz]})
		off += sz
	}
	return p
}

func shapeSize(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Get returns the tensor called name.
func (p *Params) Get(name string) (Tensor, bool) {
	for _, t := range p.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

func (p *Params) must(name string) Tensor {
	t, ok := p.Get(name)
	if !ok {
		panic("model: no parameter " + name)
	}
	return t
}

// Size is the number of weights.
func (p *Params) Size() int { return len(p.Flat) }

// init fills the weights from seed: uniform Glorot for matrices, normal
// values for embeddings, zeros for biases.
func (p *Params) init(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x626162656c666973))
	for _, t := range p.Tensors {
		switch {
		case strings.HasSuffix(t.Name, ".b"):
			clear(t.Data)
		case t.Name == "ctx.lang" || t.Name == "dec.prev" || t.Name == "dec.pos":
			for i := range t.Data {
				t.Data[i] = float32(rng.NormFloat64() * 0.1)
			}
		case t.Name == "dec.posgate":
			// Unit scale, so the position-gated context passes at init.
			for i := range t.Data {
				t.Data[i] = float32(rng.NormFloat64())
			}
		default:
			lim := math.Sqrt(6 / float64(t.Shape[0]+t.Shape[1]))
			for i := range t.Data {
				t.Data[i] = float32((2*rng.Float64() - 1) * lim)
			}
		}
	}
}

// describe is "name[shape]" of every tensor, for errors.
func (p *Params) describe() string {
	var b strings.Builder
	for i, t := range p.Tensors {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s%v", t.Name, t.Shape)
	}
	return b.String()
}
