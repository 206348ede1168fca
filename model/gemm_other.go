//go:build !amd64

package model

// gemmBlock adds, for each row r, X[r, lists[r]] W[lists[r], :] to Y[r].
func gemmBlock(y, x []float32, rows, in, out int, w []float32, lists [][]int32) {
	gemmAxpy(y, x, in, out, w, lists)
}
