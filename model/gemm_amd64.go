package model

import "golang.org/x/sys/cpu"

// gemmCols is the width of a column block: 64 floats are eight AVX
// registers of accumulators, and 64 columns of a 2048-input layer's
// weights (512 KiB) still fit the level-2 cache they are reused from.
const gemmCols = 64

// gemmBlock adds, for each row r, X[r, lists[r]] W[lists[r], :] to Y[r].
// With AVX2 the columns go in blocks of gemmCols, each block through
// every row before the next, then eight and four at a time, then one.
func gemmBlock(y, x []float32, rows, in, out int, w []float32, lists [][]int32) {
	if !cpu.X86.HasAVX2 {
		gemmAxpy(y, x, in, out, w, lists)
		return
	}
	j := 0
	for ; j+gemmCols <= out; j += gemmCols {
		for r, idx := range lists {
			if len(idx) > 0 {
				kern1x64(&y[r*out+j], out, &x[r*in], in, &w[j], out, &idx[0], len(idx))
			}
		}
	}
	for ; j+8 <= out; j += 8 {
		for r, idx := range lists {
			if len(idx) > 0 {
				kern1x8(&y[r*out+j], out, &x[r*in], in, &w[j], out, &idx[0], len(idx))
			}
		}
	}
	if j+4 <= out {
		for r, idx := range lists {
			if len(idx) > 0 {
				kern1x4(&y[r*out+j], out, &x[r*in], in, &w[j], out, &idx[0], len(idx))
			}
		}
		j += 4
	}
	if j < out {
		gemmTail(y, x, in, out, w, lists, j)
	}
}

// The kernels (gemm_amd64.s) add, for one row and one block of columns
// starting at y and w, the terms at the n indices idx.

//go:noescape
func kern1x64(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern1x8(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern1x4(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
