// Package nvml is the GPU agent: it reads every GPU on a node through NVML
// (github.com/NVIDIA/go-nvml), exports Prometheus metrics, watches health and
// publishes the node's GPU inventory for the scheduler.
//
// Not built yet: issue 6 brings it.
package nvml
