package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// linearRef is the single-input definition: for each output, the bias
// plus the products of the row's non-zero inputs in increasing order,
// each rounded to float32.
func linearRef(y, x []float32, rows, in, out int, w, b []float32) {
	for r := range rows {
		for j := range out {
			acc := b[j]
			for i := range in {
				if xi := x[r*in+i]; xi != 0 {
					acc += float32(xi * w[i*out+j])
				}
			}
			y[r*out+j] = acc
		}
	}
}

// Every kernel (column blocks of 64, 8 and 4, single columns) and the
// portable path give each output the single-input sum to the bit, sign of
// zero included, whatever the rows beside it, with inputs that are often
// zero (or -0) in some rows and not others.
func TestLinearRowsMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, in := range []int{1, 3, 17, 64, 400} {
		for _, out := range []int{1, 4, 7, 8, 12, 16, 31, 33, 64, 100, 129, 256} {
			for rows := 1; rows <= 9; rows++ {
				t.Run(fmt.Sprintf("in=%d/out=%d/rows=%d", in, out, rows), func(t *testing.T) {
					w := Tensor{Shape: []int{in, out}, Data: make([]float32, in*out)}
					b := Tensor{Shape: []int{1, out}, Data: make([]float32, out)}
					for i := range w.Data {
						w.Data[i] = float32(rng.NormFloat64())
					}
					for i := range b.Data {
						b.Data[i] = float32(rng.NormFloat64())
					}
					x := make([]float32, rows*in)
					for i := range x {
						switch rng.IntN(4) {
						case 0:
							x[i] = 0
						case 1:
							x[i] = float32(math.Copysign(0, -1))
						default:
							x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
						}
					}
					got := make([]float32, rows*out)
					linearRows(got, x, rows, w, b, newGemmScratch(rows, in))
					want := make([]float32, rows*out)
					linearRef(want, x, rows, in, out, w.Data, b.Data)
					portable := make([]float32, rows*out)
					s := newGemmScratch(rows, in)
					for r := range rows {
						copy(portable[r*out:(r+1)*out], b.Data)
						s.lists[r] = nonzero(s.idx[r*in:(r+1)*in], x[r*in:(r+1)*in])
					}
					gemmAxpy(portable, x, in, out, w.Data, s.lists[:rows])
					for k := range want {
						wb := math.Float32bits(want[k])
						if math.Float32bits(got[k]) != wb || math.Float32bits(portable[k]) != wb {
							t.Fatalf("row %d, output %d: kernel %v, portable %v, definition %v", k/out, k%out, got[k], portable[k], want[k])
						}
					}
				})
			}
		}
	}
}

func TestNonzero(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		x    []float32
		want []int32
	}{
		{[]float32{0, 1, negZero, -2}, []int32{1, 3}},
		{[]float32{0, 0, 0}, []int32{}},
		{[]float32{}, []int32{}},
		{[]float32{1e-45, negZero, -1e-45}, []int32{0, 2}},
		{[]float32{float32(math.Inf(-1)), 0, float32(math.NaN()), 0}, []int32{0, 2}},
	}
	for _, tc := range tests {
		got := nonzero(make([]int32, len(tc.x)), tc.x)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("nonzero(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
}

func TestRelu(t *testing.T) {
	x := []float32{-1, 0, float32(math.Copysign(0, -1)), 2.5, float32(math.Inf(-1)), float32(math.Inf(1)), -1e-45}
	want := []float32{0, 0, 0, 2.5, 0, float32(math.Inf(1)), 0}
	relu(x)
	for i := range x {
		if x[i] != want[i] || math.Signbit(float64(x[i])) {
			t.Errorf("relu[%d] = %v, want +%v", i, x[i], want[i])
		}
	}
}
