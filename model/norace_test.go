//go:build !race

package model

// raceEnabled shortens the training test under the race detector, which
// slows float arithmetic tenfold; the race check needs the code paths, not
// the convergence.
const raceEnabled = false
