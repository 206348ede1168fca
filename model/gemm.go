package model

import "math"

// linearRows computes Y = X W + b for rows inputs at once (X rows x in, Y
// rows x out, row-major). idx is scratch of at least in elements.
//
// Every output adds its terms x[i]*w[i][j] in increasing i, each product
// rounded to float32 before the sum (no fused multiply-add), so a row's
// result does not depend on the rows beside it: a batched request gets
// the numbers it would get alone. Inputs that are zero in every row of a
// group are skipped; after a ReLU that is about half of them for a single
// row, and adding a zero product changes no value.
//
// Rows go four at a time through a kernel that keeps the outputs in
// registers and loads each weight once for the group: the weight reuse
// that makes a batch cheaper per input (see gemmBlock).
func linearRows(y, x []float32, rows int, w, b Tensor, idx []int32) {
	in, out := w.Shape[0], w.Shape[1]
	for r := range rows {
		copy(y[r*out:(r+1)*out], b.Data[:out])
	}
	for r0 := 0; r0 < rows; r0 += gemmRows {
		rr := min(gemmRows, rows-r0)
		xs, ys := x[r0*in:(r0+rr)*in], y[r0*out:(r0+rr)*out]
		ix := nonzero(idx, xs, rr, in)
		if len(ix) > 0 {
			gemmBlock(ys, xs, rr, in, out, w.Data, ix)
		}
	}
}

// gemmRows is how many rows one kernel call serves.
const gemmRows = 4

// nonzero returns the inputs i at which some row of x is not zero, in
// idx's storage (len(idx) >= in). It has no branch on the data: after a
// ReLU, whether an input is zero is a coin toss the predictor loses.
func nonzero(idx []int32, x []float32, rows, in int) []int32 {
	idx = idx[:in]
	n := 0
	for i, v := range x[:in] {
		bits := math.Float32bits(v)
		for r := 1; r < rows; r++ {
			bits |= math.Float32bits(x[r*in+i])
		}
		idx[n] = int32(i)
		// 1 when some row's magnitude bits are set: -0 counts as zero.
		n += int((bits&0x7fffffff + 0x7fffffff) >> 31)
	}
	return idx[:n]
}

// gemmTail adds the terms at idx to columns j0.. of every row, one output
// at a time, in the same order and rounding as the kernels.
func gemmTail(y, x []float32, rows, in, out int, w []float32, idx []int32, j0 int) {
	for r := range rows {
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

// gemmAxpy is the portable path: for each input, each row adds x*w's row
// with gonum's SIMD axpy; the same sums in the same order as the kernels.
func gemmAxpy(y, x []float32, rows, in, out int, w []float32, idx []int32) {
	for _, i := range idx {
		wr := w[int(i)*out : (int(i)+1)*out]
		for r := range rows {
			if xi := x[r*in+int(i)]; xi != 0 {
				axpy(xi, wr, y[r*out:(r+1)*out])
			}
		}
	}
}
