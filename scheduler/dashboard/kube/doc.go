// Package kube is the dashboard's Source on Kubernetes: what `babelfish
// scheduler --dashboard-listen` serves the SRE's page from.
//
//   - GPUs: every Node's inventory annotation (babelfish.dev/gpu-inventory,
//     written by the GPU agent; see nvml/inventory) gives each GPU's model,
//     memory and health. The live figures (utilization, memory used,
//     temperature, power, health, holding pods) come from the GPU agents'
//     /metrics, found through the API as the pods matching the agent
//     selector, at podIP and their "metrics" container port, scraped in
//     parallel under a short timeout. An agent that does not answer leaves
//     its GPUs with the inventory's figures and dashes for the live ones;
//     it never blanks the section.
//   - Jobs: the TrainingJobs (babelfish.dev/v1alpha1) and their status,
//     active ones first by priority, then the most recently finished.
//   - Releases: a Releases implementation; Registry reads them from object
//     storage with model/registry (models/<model>/releases/*.json and
//     models/<model>/current).
//   - Serving: the serving pods' /metrics (babelfish_serving_*): QPS, error
//     ratio and p99 latency from the change of their counters and latency
//     histogram between this poll and the oldest one within the rate
//     window, as Prometheus' rate() and histogram_quantile() would.
//
// The Source reads the API server on every call (no cache): the page polls
// every few seconds, which costs a handful of list calls, and shows what
// the API server holds now.
package kube
