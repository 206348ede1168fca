// Package bufpool is a gRPC receive-buffer pool (mem.BufferPool) that does
// not zero what it hands out. gRPC's own pools clear every buffer on Get,
// a full extra pass over every received byte; a receive buffer is always
// overwritten by the network or by gRPC's copy before anyone reads it, so
// the pass buys nothing there. Give each server or client its own Pool, and
// use it only where every byte a caller reads was written first. Codec is
// gRPC's proto codec drawing its gather and marshal buffers from a Pool.
package bufpool
