package model

import "golang.org/x/sys/cpu"

// gemmBlock adds X[:, idx] W[idx, :] to Y for rows <= gemmRows. With AVX2
// the columns go in blocks of 64 (one row), 32 (two) or 16 (three or
// four) floats, eight accumulator registers in all; the last columns go
// eight, then four at a time per row, and then one at a time.
func gemmBlock(y, x []float32, rows, in, out int, w []float32, idx []int32) {
	if !cpu.X86.HasAVX2 {
		gemmAxpy(y, x, rows, in, out, w, idx)
		return
	}
	n := len(idx)
	kern, width := kern4x16, 16
	switch rows {
	case 1:
		kern, width = kern1x64, 64
	case 2:
		kern, width = kern2x32, 32
	case 3:
		kern = kern3x16
	}
	j := 0
	for ; j+width <= out; j += width {
		kern(&y[j], out, &x[0], in, &w[j], out, &idx[0], n)
	}
	for ; j+8 <= out; j += 8 {
		for r := range rows {
			kern1x8(&y[r*out+j], out, &x[r*in], in, &w[j], out, &idx[0], n)
		}
	}
	if j+4 <= out {
		for r := range rows {
			kern1x4(&y[r*out+j], out, &x[r*in], in, &w[j], out, &idx[0], n)
		}
		j += 4
	}
	if j < out {
		gemmTail(y, x, rows, in, out, w, idx, j)
	}
}

// The kernels (gemm_amd64.s) add, for one block of columns starting at y
// and w, the terms at the n indices idx to rows of y; strides in elements.

//go:noescape
func kern1x64(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern1x8(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern1x4(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern2x32(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern3x16(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)

//go:noescape
func kern4x16(y *float32, ldy int, x *float32, ldx int, w *float32, ldw int, idx *int32, n int)
