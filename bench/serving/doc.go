// Command serving benchmarks the serving tier end to end: a real MinIO, a
// model promoted through the release registry, a serving.Server on
// loopback gRPC, and a closed-loop load generator.
//
// It measures throughput and p50/p99 latency at concurrency 1..64 with
// dynamic batching on (the server's default, serving.DefaultBatching:
// batches of 8, a 2 ms window that no request waits out while a core is
// idle, two executors; -max-batch, -max-delay, -instances and
// -eager-below change it) and off (MaxBatch 1, one executor: Triton's
// default without a dynamic batcher), in the same run, plus, for honesty,
// batching off with one executor per core (gain_vs_instances: what
// batching adds over plain parallel executors). The summary's ratios are
// medians over -rounds paired rounds at c=16, with the three servers up at
// once and each round running every mode back to back in a rotating order,
// so that the machine's speed drifting between two modes' windows stays
// out of them. It also reports the real-time factor at batch 1 (compute
// time over input duration) and the time from flipping `current` to
// serving the new release.
//
//	go run ./bench/serving [-duration 5s] [-levels 1,2,4,8,16,32,64] [-rounds 5]
//
// The clients send a mix of 16 speech-like clips (lengths from half to
// one and a half times -input-seconds, each with its own pitch and
// syllable rate, target languages in turn), each client cycling through
// them from its own start, so batches mix inputs as real traffic does.
// The model has the default shape with random weights, set to decode as
// a trained one does: no early end marker and units of 1 or 2 frames, so
// every request decodes up to -max-output (0.5 s, about 20 units; the
// session-5 checkpoint speaks 13 to 24 units for its phrases). Each line
// reports out_s, the mean seconds of speech per answer, and the server's
// own breakdown, as Triton reports it: queue_ms in the batcher's queue and
// compute_ms, the wall time of the batch a request ran in. A round's
// off_compute_ms beside the summary's cpu_ms_per_input_batch1 shows how
// much of the unbatched executor's time a request is the model's work
// (the rest: its core taken by the server's other goroutines, the
// collector, other processes). Output:
//
//	bench serving vocoder=... mode=batch c=16 rps=... p50_ms=... p99_ms=... queue_ms=... compute_ms=... mean_batch=... out_s=...
//	bench serving vocoder=... round=0 c=16 off_rps=... batch_rps=... instances_rps=... batching_gain=... off_compute_ms=...
//	bench serving vocoder=... batching_gain=<median rps ratio at c=16> p99_ratio=... gain_vs_instances=... rtf_batch1=... swap_to_serving_s=... work_ratio=...
package main
