// Package loader streams a dataset version to the ranks of a training job:
// a global sample order that is a pure function of (seed, epoch), partitioned
// over (rank, world size) with each sample exactly once per epoch, a cursor
// that resumes it exactly (also with another world size, given the same
// global batch), and shard reads with checksums, retries and prefetch.
package loader
