package model

import "math"

// gemmScratch is linearRows' working space for up to rows inputs of up to
// in features: each row's list of non-zero inputs.
type gemmScratch struct {
	idx   []int32
	lists [][]int32
}

func newGemmScratch(rows, in int) *gemmScratch {
	return &gemmScratch{idx: make([]int32, rows*in), lists: make([][]int32, rows)}
}

// linearRows computes Y = X W + b for rows inputs at once (X rows x in, Y
// rows x out, row-major), with s sized for at least rows and in.
//
// Every output adds its terms x[i]*w[i][j] for the row's non-zero inputs
// in increasing i, each product rounded to float32 before the sum (no
// fused multiply-add): a row's result is bit for bit what it gets alone,
// whatever the rows beside it. After a ReLU about half the inputs are
// zero, and skipping them is worth more than sharing weight loads across
// rows (which would have to multiply every input any row needs). So each
// row keeps its own list, and the rows share the weights through the
// cache instead: the columns go in blocks of 64, and each block serves
// every row while it is still in cache. For a network larger than the
// last-level cache that is what makes a batch cheaper per input.
func linearRows(y, x []float32, rows int, w, b Tensor, s *gemmScratch) {
	in, out := w.Shape[0], w.Shape[1]
	for r := range rows {
		copy(y[r*out:(r+1)*out], b.Data[:out])
		s.lists[r] = nonzero(s.idx[r*in:(r+1)*in], x[r*in:(r+1)*in])
	}
	gemmBlock(y, x, rows, in, out, w.Data, s.lists[:rows])
}

// nonzero returns the indices of x's non-zero values (-0 counts as zero)
// in idx's storage (len(idx) >= len(x)). It has no branch on the data:
// after a ReLU, whether a value is zero is a coin toss a branch predictor
// loses.
func nonzero(idx []int32, x []float32) []int32 {
	idx = idx[:len(x)]
	n := 0
	for i, v := range x {
		idx[n] = int32(i)
		// 1 when some magnitude bit is set.
		n += int((math.Float32bits(v)&0x7fffffff + 0x7fffffff) >> 31)
	}
	return idx[:n]
}

// gemmTail adds each row's terms to its columns j0.., one output at a
// time, in the same order and rounding as the kernels.
func gemmTail(y, x []float32, in, out int, w []float32, lists [][]int32, j0 int) {
	for r, idx := range lists {
		xr, yr := x[r*in:(r+1)*in], y[r*out:(r+1)*out]
		for j := j0; j < out; j++ {
			acc := yr[j]
			for _, i := range idx {
				// The conversion rounds the product, ruling out a fused
				// multiply-add on targets that have one.
				acc += float32(xr[i] * w[int(i)*out+j])
			}
			yr[j] = acc
		}
	}
}

// gemmAxpy is the portable path: each row adds x[i] times weight row i
// for its listed inputs, the same sums in the same order as the kernels.
// The explicit conversion rounds each product, so a compiler for a CPU
// with fused multiply-add (arm64, GOAMD64=v3) keeps the same bits.
func gemmAxpy(y, x []float32, in, out int, w []float32, lists [][]int32) {
	for r, idx := range lists {
		yr := y[r*out : (r+1)*out]
		for _, i := range idx {
			a := x[r*in+int(i)]
			wr := w[int(i)*out : (int(i)+1)*out]
			wr = wr[:len(yr)]
			for j := range yr {
				yr[j] += float32(a * wr[j])
			}
		}
	}
}
