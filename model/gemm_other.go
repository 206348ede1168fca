//go:build !amd64

package model

// gemmBlock adds X[:, idx] W[idx, :] to Y for rows <= gemmRows.
func gemmBlock(y, x []float32, rows, in, out int, w []float32, idx []int32) {
	gemmAxpy(y, x, rows, in, out, w, idx)
}
