// Package batcher is the serving tier's dynamic batcher, after Triton's:
// requests wait in a bounded queue until a batch of MaxBatch is ready or the
// oldest has waited MaxDelay, then run together on one of Instances
// executors. A full queue rejects at once with a retry hint; a request whose
// deadline passes or whose caller goes away leaves the queue, and a batch
// whose every caller went away has its context cancelled, so cancellation
// reaches the model.
//
// The decisions are pure and table-tested: Plan (what to run now, what has
// expired, when to look again) and RetryAfter (how long a rejected client
// should wait). Batcher is the thin I/O edge around them: a goroutine,
// a timer and channels.
package batcher
