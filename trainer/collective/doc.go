// Package collective is the communication layer of the distributed trainer:
// rendezvous of the ranks of one job and the collective operations of
// data-parallel training (all-reduce, broadcast, barrier) over gRPC.
//
// Every rank runs a gRPC server (service babelfish.collective.v1.Collective).
// Ranks find each other either from a static peer list or by registering
// their listen address with rank 0, which answers with the full list once
// the whole gang of the same job and generation is in. Each rank then opens
// one long-lived Ring stream to its right neighbour (rank+1 mod world size);
// all collectives run over that ring.
//
// Each rank can also serve Ring alone on a second address, its ring data
// path (h2ring.go, Config.RingListenAddr); with a rendezvous it registers
// that address with its main one. The data path speaks gRPC on the wire, HTTP/2 with
// gRPC's messages and status trailers (grpc-go's client can stream to it),
// but lets frames grow to 16 MiB where grpc-go's transport fixes them at 16
// KiB and copies every byte through its buffers: a chunk goes from the
// sender's buffer to the socket in one writev, and the receiver applies it
// as it reads, straight into place for a copy or from a cache-warm scratch
// for a sum. That is what takes the all-reduce from half of what a plain
// TCP stream moves on loopback to about 0.9 of it (bench/trainer). A
// static peer list names the data paths in Config.RingPeers
// (BABELFISH_RING_PEERS); without them Ring goes to grpc-go's server in
// 16 KiB frames.
//
// AllReduce is the bandwidth-optimal ring algorithm: the buffer is split into
// world-size segments, a reduce-scatter sums each segment around the ring and
// an all-gather passes the sums around again. Segments travel in chunks of
// Config.ChunkBytes, and a chunk is forwarded as soon as it has been reduced,
// so the steps pipeline. Float32 values go on the wire as raw little-endian
// bytes; on little-endian hosts the sender writes the caller's memory
// without copying, and a receiver reduces straight out of its receive
// buffers. Every rank ends with bitwise-identical results and, for a fixed
// world size, the summation order is fixed, so runs are reproducible.
//
// A failure anywhere (a peer that dies, a broken stream, an operation that
// outlives Config.OpTimeout or its context) breaks the group: every pending
// and later operation on every rank returns an error promptly, and the job is
// expected to restart the gang with a new generation.
package collective
