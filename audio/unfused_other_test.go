//go:build !amd64 || amd64.v3

package audio

// unfusedFloat: the compiler may fuse a product into an add here, so
// plainly written complex128 arithmetic is no exact reference.
const unfusedFloat = false
