// Package dashboard is the SRE's page: one plain HTML page, with its
// JavaScript and CSS embedded in the binary (no build step), that polls a
// JSON endpoint and shows, live, the GPUs of every node (utilization,
// memory, temperature, health), the TrainingJob queue and phases, the model
// releases, and serving QPS and p99 latency.
//
// The page knows nothing of where the figures come from: the control plane
// (Kubernetes) and `babelfish up` (one machine) each implement Source, and
// mount Handler where they serve HTTP.
package dashboard
