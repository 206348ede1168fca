// Package serving answers the babelfish.v1 Translator gRPC API from the
// current model release: dynamic batching, bounded queues, and model swaps
// that drop no request.
//
// A Server follows models/<model>/current in object storage (package
// model/registry). When current moves it loads the new release in the
// background, verifies its checksums, warms it up with a real translation,
// swaps it in atomically, and drains the old one: requests already queued on
// the old release finish there, new ones go to the new release, and every
// response names the release that produced it. gRPC health reports SERVING
// only once a release is warm.
//
// Requests are checked against Limits (bytes, duration, sample rate,
// language, decode options) and answered INVALID_ARGUMENT naming the limit.
// Accepted ones wait in a bounded queue of the dynamic batcher (package
// serving/batcher); a full queue answers RESOURCE_EXHAUSTED with a RetryInfo
// at once, before the request is even decoded. Deadlines and cancellation
// reach the batcher (an expired request leaves the queue) and the model (a
// batch whose callers have all gone is cancelled). StreamTranslate cuts the
// incoming audio into segments with an energy VAD (package serving/vad) and
// answers segment by segment.
//
// Prometheus metrics follow Triton's breakdown: request success and failure
// counts, queue and compute time, batch sizes and executions, per release.
// TLS, mutual TLS and bearer-token auth are optional.
//
// Embedding: New(store, model, opts...) returns a Server; Serve(ctx, lis)
// runs it until ctx ends; Ready() is closed when the first release serves.
package serving
