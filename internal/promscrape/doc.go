// Package promscrape reads another process's Prometheus /metrics (or any
// small plain-text endpoint beside it) with a bound on the answer's size:
// the one way the GPU table (`babelfish gpus`) and the control plane's
// dashboard read agents and serving replicas.
package promscrape
