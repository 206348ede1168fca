// Package trainer runs one rank of a data-parallel training job of the
// direct speech-to-speech translation model: rendezvous, ring all-reduce over
// gRPC, checkpoints to object storage, and progress reporting.
//
// Not built yet: issue 4 brings it.
package trainer
