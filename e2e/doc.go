// Package e2e is the end-to-end suite of Babelfish: it builds the binary,
// starts one `babelfish up` (on a MinIO the suite owns, with simulated
// GPUs) shared by every test, builds a small corpus, and drives the whole
// pipeline through the CLI as a user would: submit, jobs, logs, eval,
// promote, translate. It also makes the faults the design promises to
// survive: a rank killed mid-training, the object store gone for 10 s, a
// restart of `up`, a promotion while a client translates.
//
// Everything is real: MinIO, espeak-ng speech, trainer processes talking
// over gRPC; only the GPUs are go-nvml's mock. The model is tiny and the
// steps few, so the suite fits in CI on two cores (about two minutes, plus
// building the binary without -race; BABELFISH_E2E_BIN names a prebuilt one).
package e2e
