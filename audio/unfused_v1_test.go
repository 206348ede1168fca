//go:build amd64 && !amd64.v3

package audio

// unfusedFloat: the compiler rounds every float64 product here (amd64
// below v3 has no fused multiply-add), so complex128 arithmetic written
// plainly is the exact reference.
const unfusedFloat = true
