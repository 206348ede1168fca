// Command trainer benchmarks the trainer's communication layer: ring
// all-reduce over gRPC (package trainer/collective) among 4 ranks on
// loopback, each rank a separate process that joins through the real
// rendezvous, against raw TCP loopback throughput measured by the same
// processes in the same run. It prints
//
//	bench trainer allreduce_ratio=… busbw_MBps=… tcp_MBps=… cpu_ratio=…
//
// busbw_MBps is the all-reduce bus bandwidth as NCCL-tests define it,
// 2(n-1)/n × buffer bytes / time: the bytes each rank must send (and
// receive) per all-reduce, over the time. tcp_MBps is the baseline on the
// same topology: every rank streams that same number of bytes to its right
// neighbour over a plain TCP connection (1 MiB writes) while reading as many
// from its left, out of and into buffers as large as the all-reduced one;
// no framing, no reduction, no copies but the kernel's. allreduce_ratio is
// busbw over that baseline (the baseline's time over the all-reduce's), the
// median over rounds; each round runs both phases back to back, alternating
// which goes first, and a phase's time is that of its slowest rank.
// cpu_ratio is the CPU time (user+system, all ranks) the baseline cost over
// what the all-reduce cost, median over rounds: on a machine whose cores
// are shared with other work it says what the wall-clock ratio would be if
// both were CPU-bound. MB is 10^6 bytes.
//
// The step-time split (data, forward, backward, all-reduce, optimizer) and
// samples/s for 1 and 2 ranks belong here too; they come with the model
// (issue 4).
//
// Usage: go run ./bench/trainer [-ranks 4] [-size 64MiB] [-chunk 1MiB] [-rounds 9] [-cpuprofile prefix]
package main
