// Package units turns speech into discrete units and back: k-means over
// log-mel frames of target speech learns a codebook; a unit sequence is the
// nearest centroid of each (pooled) frame with consecutive repeats removed
// and their durations kept; the unit vocoder renders a sequence as centroid
// log-mel frames, lightly smoothed, and inverts them to a waveform with
// Griffin-Lim.
//
// The codebook is part of a trained model and is saved with it.
package units
