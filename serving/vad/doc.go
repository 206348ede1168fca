// Package vad finds speech segments in a stream of audio by frame energy,
// for StreamTranslate: a segment starts at the first loud frame and ends once
// the audio has been quiet for MinSilence, with Pad of context kept on each
// side; bursts shorter than MinSpeech are dropped as clicks, and a segment
// longer than MaxSegment is cut so latency and memory stay bounded.
//
// A Segmenter is pure computation over the samples pushed into it: the same
// samples give the same segments whatever the chunk sizes.
package vad
