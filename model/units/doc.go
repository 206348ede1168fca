// Package units turns speech into discrete units and back: k-means over
// log-mel frames of target speech learns a codebook; a unit sequence is the
// nearest centroid of each (pooled) frame with consecutive repeats removed
// and their durations kept; the unit vocoder renders a sequence as centroid
// log-mel frames, lightly smoothed, and inverts them to a waveform with
// Griffin-Lim. A second rendering, Loops, moves the phase search out of the
// request: each unit's centroid, held still, is rendered once per codebook
// as a seamless loop (Griffin-Lim on a circular signal), and a sequence is
// those loops read out for each unit's duration and cross-faded at the
// boundaries, about ten times cheaper per output, optionally refined by
// a few Griffin-Lim iterations started from it.
//
// The codebook is part of a trained model and is saved with it.
package units
