// Command serving benchmarks the serving tier end to end: a real MinIO, a
// model promoted through the release registry, a serving.Server on
// loopback gRPC, and a closed-loop load generator.
//
// It measures throughput and p50/p99 latency at concurrency 1..64 with
// dynamic batching on (MaxBatch 16, 5 ms window, one executor) and off
// (MaxBatch 1, one executor: Triton's default without a dynamic batcher),
// in the same run, plus, for honesty, batching off with one executor per
// core. It also reports the real-time factor at batch 1 (compute time over
// input duration) and the time from flipping `current` to serving the new
// release.
//
//	go run ./bench/serving [-duration 4s] [-levels 1,2,4,8,16,32,64]
//
// The model has the default shape with random weights (serving cost does
// not depend on training) and its output capped by -max-output, so every
// request does the same work. Output:
//
//	bench serving mode=batch c=16 rps=... p50_ms=... p99_ms=... mean_batch=...
//	bench serving batching_gain=<rps ratio at c=16> p99_ratio=... rtf_batch1=... swap_to_serving_s=...
package main
