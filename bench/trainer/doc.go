// Command trainer benchmarks the trainer's communication layer: ring
// all-reduce over gRPC (package trainer/collective) among 4 ranks on
// loopback, each rank a separate process that joins through the real
// rendezvous (so the ring runs over each rank's ring data path, gRPC with
// large HTTP/2 frames), against raw TCP loopback throughput measured by the
// same processes in the same run. It prints
//
//	bench trainer allreduce_ratio=… busbw_MBps=… tcp_MBps=… cpu_ratio=… raw_allreduce_ratio=… raw_busbw_MBps=…
//
// busbw_MBps is the all-reduce bus bandwidth as NCCL-tests define it,
// 2(n-1)/n × buffer bytes / time: the bytes each rank must send (and
// receive) per all-reduce, over the time. tcp_MBps is the baseline on the
// same topology: every rank streams that same number of bytes to its right
// neighbour over a plain TCP connection (1 MiB writes) while reading as many
// from its left, out of and into buffers as large as the all-reduced one;
// no framing, no reduction, no copies but the kernel's. allreduce_ratio is
// busbw over that baseline (the baseline's time over the all-reduce's), the
// median over rounds; each round runs the phases back to back in a rotating
// order, and a phase's time is that of its slowest rank. A third phase runs
// the same ring algorithm (reduce-scatter summing into the buffer, then
// all-gather) over the baseline's raw TCP connections without gRPC:
// raw_allreduce_ratio separates what the algorithm costs from what the
// transport adds (that ring reads a whole segment, then sums it).
// cpu_ratio is the CPU time (user+system, all ranks) the baseline cost over
// what the all-reduce cost, median over rounds: on a machine whose cores
// are shared with other work it says what the wall-clock ratio would be if
// both were CPU-bound. MB is 10^6 bytes.
//
// A second part trains the default model (the accuracy recipe) on a small
// espeak-ng corpus in a MinIO of its own, with 1 rank and then 2 ranks
// joined over loopback gRPC, and prints per rank count
//
//	bench trainer step_ranks=N step_ms=… data_ms=… forward_ms=… backward_ms=… allreduce_ms=… optimizer_ms=… samples_per_s=… pairs_per_s=… scaling_vs_1=…
//
// medians over the steps after the first quarter. The forward pass is timed
// alone on a gradient-free twin graph (trainer.Options.SplitForward);
// backward is forward+backward less that.
//
// Usage: go run ./bench/trainer [-only allreduce|steps] [-ranks 4] [-size 64MiB] [-chunk 1MiB] [-rounds 9] [-step-steps 40] [-step-langs de,en,es,fr] [-cpuprofile prefix]
package main
