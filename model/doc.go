// Package model is Babelfish's direct speech-to-speech translation model,
// shared by the trainer and serving: speech in, speech out, with no text,
// phonemes or transcripts anywhere (the S2UT family: Lee et al. 2022).
//
// The network has three parts:
//
//   - Encoder: log-mel frames (or mel cepstra) of the source speech, silence
//     trimmed and normalised per utterance, pooled over a fixed number of
//     time segments and passed through an MLP.
//   - Decoder: a per-utterance context (the encoding joined with a
//     target-language embedding) conditions an autoregressive predictor of
//     discrete speech units: previous unit and position in, next unit (or
//     end) and that unit's duration out. The context enters each position
//     both added and gated by a position embedding, so "which unit comes at
//     position t of this phrase" is one product away. Teacher forcing over
//     all positions at once keeps the training graph static: targets are
//     padded to the graph's length with a mask.
//   - Unit vocoder: units and durations to centroid log-mel frames, lightly
//     smoothed, to a waveform by Griffin-Lim (package units), or from
//     per-unit loops rendered once per model (Config.Vocoder "loops"; any
//     checkpoint can be heard through either, DecodeOptions.Vocoder).
//
// Training computes summed losses and gradients with gorgonia on a static
// graph of fixed batch shape (Model.NewGraph, Graph.Gradients); graphs of
// several lengths let a trainer bucket examples by target length. The
// optimizer (Adam with warmup and cosine decay, global-norm clipping) runs in
// plain Go on the flat parameter vector (Params.Flat), so a data-parallel
// trainer can all-reduce the flat gradient between backward and update, and
// optimizer state can be checkpointed exactly (Adam.MarshalBinary).
// Gradients are sums over the examples given: ranks holding parts of a
// global batch add their gradients and pass 1/(global example count) as the
// step's scale, which equals one rank with the whole batch.
//
// Inference (Model.Translate) runs the same network in plain Go, with greedy
// or beam decoding, and needs no gorgonia graph. A batch's front end and
// vocoder run per input across the cores; its greedy decoder runs all rows
// in lock step, so each weight is read once per step for the whole batch. Save and Load write and read
// weights, configuration and unit codebook in one versioned stream.
package model
