// Package core is the pure scheduling core of Babelfish: a snapshot of nodes,
// GPUs, queues and running work goes in, a Plan (bindings, preemptions, what
// stays pending and why) comes out. It performs no I/O and imports no
// Kubernetes client, so the Kubernetes controller, the local executor of
// `babelfish up` and the trace simulator all drive the same code.
//
// The shape follows etcd-raft (a deterministic state machine the caller feeds
// and whose output the caller applies) and Nomad's pipeline: feasibility
// filters drop nodes that cannot host a request (CPU, memory, GPU model,
// enough healthy GPU milli), a Scorer ranks the survivors, and the placer
// turns the best choice into a Binding that names the node and the GPU
// indices and milli it takes. GPUs are modelled one by one: each has 1000
// milli; a sharing request (gpu milli < 1000) takes part of one GPU, a
// multi-GPU request takes whole GPUs; unhealthy GPUs are never used.
//
// Scorers: "spread" (kube-scheduler's LeastAllocated), "bestfit", "fgd"
// (Fragmentation Gradient Descent, Weng et al., USENIX ATC'23, rebuilt from
// the paper) and "babelfish" (ours: FGD's score with its ties broken by CPU
// stranding, planning for a workload that keeps the rare task types only a
// few nodes can host). Verdicts are cached per (request shape, node version)
// so replaying ten thousand arrivals on a thousand nodes stays cheap.
//
// Gangs (a job of N workers) are placed all-or-nothing on the fewest nodes,
// inside NVLink islands where possible, at the least fragmentation. Queues
// add quota, weighted fair share and borrowing of idle quota; preemption
// evicts lower-priority jobs that lose the least work since their last
// checkpoint, with a grace period, and never cascades.
package core
