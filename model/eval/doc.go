// Package eval measures speech-to-speech translation output without any
// text: mel-cepstral distortion after dynamic time warping (MCD-DTW) against
// the reference target speech, and concept accuracy, where the output is
// matched by DTW against clean renderings of every phrase of the target
// language and counts as correct when the nearest one is the right phrase.
//
// Tally accumulates both per split, so a report can put a model's figures
// beside the vocoder floor (resynthesis of the reference's true units) and
// the copy-the-input baseline.
package eval
