//go:build race

package audio

// raceEnabled relaxes timing bounds under the race detector.
const raceEnabled = true
