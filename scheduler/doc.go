// Package scheduler is Babelfish's GPU scheduler. Its parts live in
// subpackages: core is the pure scheduling core (snapshot in, plan out; no
// Kubernetes imports) and sim replays openb traces through it. The
// Kubernetes controller and the local executor build snapshots for core.
package scheduler
