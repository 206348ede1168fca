// Package minio runs the real MinIO server from the tools cache on
// loopback: a temporary one for tests and benchmarks (through
// internal/testenv), or a lasting one with a fixed address, credentials and
// data directory for `babelfish up`. It can be shut down, killed and started
// again on the same address and data, which is how fault tests take the
// object store away mid-run.
package minio
