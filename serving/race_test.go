//go:build race

package serving

// raceSlowdown scales timing bounds under the race detector, which slows
// this code about tenfold; the bounds themselves are stated for normal
// builds, where they are asserted as written.
const raceSlowdown = 10
