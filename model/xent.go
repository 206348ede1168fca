package model

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// softmaxXent returns -sum(targets * logsoftmax(logits)) over an n x c
// matrix of logits, rows normalised independently, as one fused op. Rows
// whose targets are all zero (padding) cost nothing and get zero gradient.
//
// It replaces gorgonia's LogSoftMax, whose float32 kernel in
// gorgonia.org/tensor v0.9.23 takes each row's running maximum from the
// first element of the whole matrix: exp overflows once a row's leading
// logit exceeds that by about 88, and the loss turns NaN. The fused op also
// computes in float64 on one goroutine, so it is deterministic.
func softmaxXent(logits, targets *G.Node) (*G.Node, error) {
	return G.ApplyOp(xentOp{}, logits, targets)
}

type xentOp struct{}

func matType() hm.Type { return G.TensorType{Dims: 2, Of: hm.TypeVariable('a')} }

func (xentOp) Arity() int { return 2 }
func (xentOp) Type() hm.Type {
	return hm.NewFnType(matType(), matType(), hm.TypeVariable('a'))
}
func (xentOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	a, b := in[0].(tensor.Shape), in[1].(tensor.Shape)
	if !a.Eq(b) || a.Dims() != 2 {
		return nil, fmt.Errorf("model: xent of logits %v and targets %v: want equal n x c shapes", a, b)
	}
	return tensor.ScalarShape(), nil
}
func (xentOp) ReturnsPtr() bool     { return false }
func (xentOp) CallsExtern() bool    { return false }
func (xentOp) OverwritesInput() int { return -1 }
func (xentOp) String() string       { return "SoftmaxXent" }
func (op xentOp) WriteHash(h hash.Hash) {
	fmt.Fprint(h, op.String())
}
func (op xentOp) Hashcode() uint32 { return hashOf(op) }

func (xentOp) Do(vals ...G.Value) (G.Value, error) {
	x, t, n, c, err := xentArgs(vals[0], vals[1])
	if err != nil {
		return nil, err
	}
	var loss float64
	for r := range n {
		xr, tr := x[r*c:(r+1)*c], t[r*c:(r+1)*c]
		var tsum float64
		for _, v := range tr {
			tsum += float64(v)
		}
		if tsum == 0 {
			continue
		}
		lse := logSumExp(xr)
		for k, v := range tr {
			if v != 0 {
				loss += float64(v) * (lse - float64(xr[k]))
			}
		}
	}
	return G.NewF32(float32(loss)), nil
}

func (xentOp) DiffWRT(int) []bool { return []bool{true, false} }

func (xentOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	d, err := G.ApplyOp(xentDiffOp{}, inputs[0], inputs[1], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{d, nil}, nil
}

// xentDiffOp is the gradient of xentOp with respect to the logits:
// g * (softmax(x) * sum(t) - t), row by row.
type xentDiffOp struct{}

func (xentDiffOp) Arity() int { return 3 }
func (xentDiffOp) Type() hm.Type {
	return hm.NewFnType(matType(), matType(), hm.TypeVariable('a'), matType())
}
func (xentDiffOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return in[0].(tensor.Shape).Clone(), nil
}
func (xentDiffOp) ReturnsPtr() bool     { return false }
func (xentDiffOp) CallsExtern() bool    { return false }
func (xentDiffOp) OverwritesInput() int { return -1 }
func (xentDiffOp) String() string       { return "SoftmaxXentDiff" }
func (op xentDiffOp) WriteHash(h hash.Hash) {
	fmt.Fprint(h, op.String())
}
func (op xentDiffOp) Hashcode() uint32 { return hashOf(op) }

func (xentDiffOp) Do(vals ...G.Value) (G.Value, error) {
	x, t, n, c, err := xentArgs(vals[0], vals[1])
	if err != nil {
		return nil, err
	}
	var g float64
	switch v := vals[2].(type) {
	case *G.F32:
		g = float64(*v)
	case tensor.Tensor:
		f, ok := v.Data().(float32)
		if !ok {
			return nil, fmt.Errorf("model: xent gradient is %T", v.Data())
		}
		g = float64(f)
	default:
		return nil, fmt.Errorf("model: xent gradient is %T", vals[2])
	}
	out := make([]float32, n*c)
	for r := range n {
		xr, tr := x[r*c:(r+1)*c], t[r*c:(r+1)*c]
		var tsum float64
		for _, v := range tr {
			tsum += float64(v)
		}
		if tsum == 0 {
			continue
		}
		lse := logSumExp(xr)
		dr := out[r*c : (r+1)*c]
		for k, v := range xr {
			dr[k] = float32(g * (math.Exp(float64(v)-lse)*tsum - float64(tr[k])))
		}
	}
	return tensor.New(tensor.WithShape(n, c), tensor.WithBacking(out)), nil
}

func xentArgs(xv, tv G.Value) (x, t []float32, n, c int, err error) {
	xt, ok1 := xv.(tensor.Tensor)
	tt, ok2 := tv.(tensor.Tensor)
	if !ok1 || !ok2 {
		return nil, nil, 0, 0, fmt.Errorf("model: xent inputs are %T and %T", xv, tv)
	}
	x, ok1 = xt.Data().([]float32)
	t, ok2 = tt.Data().([]float32)
	if !ok1 || !ok2 || xt.Shape().Dims() != 2 || len(x) != len(t) {
		return nil, nil, 0, 0, fmt.Errorf("model: xent wants two float32 matrices of one shape, got %v and %v", xt.Shape(), tt.Shape())
	}
	return x, t, xt.Shape()[0], xt.Shape()[1], nil
}

func logSumExp(x []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

func hashOf(op fmt.Stringer) uint32 {
	h := fnv.New32a()
	fmt.Fprint(h, op.String())
	return h.Sum32()
}
