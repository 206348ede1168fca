// Package features is the speech front end shared by the S2ST model, its
// unit extractor and its evaluator: log-mel analysis at the model's rate,
// trimming of leading and trailing silence, per-utterance normalisation,
// adaptive pooling to a fixed number of segments (the encoder's input), and
// mel cepstra (for DTW matching and mel-cepstral distortion).
//
// Every function works on audio.Spectrogram values (frames x bins, row-major)
// and is deterministic, so training, serving and evaluation see exactly the
// same features for the same audio.
package features
