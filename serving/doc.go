// Package serving answers the babelfish.v1 Translator gRPC API from the
// current model release: dynamic batching, bounded queues, and model swaps
// that drop no request.
//
// Not built yet: issue 7 brings it.
package serving
