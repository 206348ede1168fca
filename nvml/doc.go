// Package nvml is the GPU agent: it reads every GPU on a node through NVML
// (github.com/NVIDIA/go-nvml), exports Prometheus metrics, watches health and
// publishes the node's GPU inventory for the scheduler. `babelfish gpu-agent`
// runs it, one per node (a DaemonSet).
//
// # GPUs, real or fake
//
// Config.NVML is gonvml.New() on a GPU machine. Without a driver, New fails
// with ErrNoNVML and never falls back by itself; NewFake builds a machine on
// go-nvml's own mock servers (mock/dgxa100, mock/dgxh100) whose unset
// functions are filled with plausible values that move with time (load,
// memory, temperature, power, energy as the integral of power, clocks, ECC,
// remapped rows, PCIe replays, NVLink, processes) and into which tests
// inject XIDs, ECC errors, a lost GPU or a downed NVLink.
//
// # Sampling and /metrics
//
// The agent samples every GPU each Config.Interval (1 s) and keeps the
// latest sample; /metrics turns it into metrics at scrape time with no NVML
// call, so scrapes are cheap and many scrapers cost the GPUs nothing
// (bench/nvml measures both). Names and units are dcgm-exporter's where it
// has one (DCGM_FI_DEV_GPU_UTIL %, DCGM_FI_DEV_FB_USED MiB,
// DCGM_FI_DEV_POWER_USAGE W, DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION mJ, ...),
// with its labels gpu, UUID, pci_bus_id, device, modelName, Hostname and
// container, namespace, pod from the kubelet's pod-resources API. A value
// NVML does not support is left out, never exported as a sentinel. XIDs are
// babelfish_gpu_xid_errors_total{xid="79"}, a counter per code that keeps
// the history; DCGM_FI_DEV_XID_ERRORS (the last XID) is kept for
// dashboards built on dcgm-exporter. A shared GPU's series carry its first
// holder; babelfish_gpu_pod_info lists all of them.
//
// # Health
//
// An NVML event set reports critical XIDs and double-bit ECC errors. An XID
// outside Config.IgnoredXIDs (default as NVIDIA's device plugin: 13, 31,
// 43, 45, 68, 109, which are application errors) or a double-bit error
// makes the GPU unhealthy with a reason; a call answering
// ERROR_GPU_IS_LOST makes it lost and unhealthy. Unlike the device plugin,
// a GPU does not stay unhealthy forever: once it has been quiet for
// Config.RecoveryQuiet (5 min) the recovery probe reads it again (same
// UUID, memory and temperature readable, no row remap waiting for a reset)
// and marks it healthy.
//
// # Inventory on the Node
//
// A Publisher writes the inventory onto the agent's Node with one JSON
// merge patch of its metadata (see package inventory for the format):
//
//	labels:      nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3
//	             nvidia.com/gpu.count=8
//	             nvidia.com/gpu.memory=81920
//	             nvidia.com/gpu.family=hopper
//	annotation:  babelfish.dev/gpu-inventory={"version":1,"node":"n1",
//	             "updated":"...","driver":"550.54.15","gpus":[{"index":0,
//	             "uuid":"GPU-...","model":"NVIDIA H100 80GB HBM3",
//	             "family":"hopper","memoryMiB":81920,"freeMiB":40000,
//	             "healthy":true,"island":0}, {"index":3, ...,
//	             "healthy":false,"reason":"xid 79 (GPU has fallen off the
//	             bus)","since":"...","island":0}, ...]}
//
// It writes only when something the scheduler cares about changed (a GPU's
// health, reason or island, or its free memory by at least FreeStepMiB), at
// most once per MinInterval (10 s), and at least once per Heartbeat (5 min)
// so a stale "updated" shows a dead agent. The scheduler parses the
// annotation with inventory.FromNode: a pure function, no client-go.
//
// `babelfish gpus` shows a table of GPUs from the Nodes' inventories or,
// live, from agents' /metrics (ScrapeAgent, NodeRows, WriteTable).
package nvml
