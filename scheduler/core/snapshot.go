package core

import (
	"fmt"
	"time"
)

// GPUInfo is one GPU of a node as the GPU agent reports it.
type GPUInfo struct {
	Index     int // device index on the node (the NVML index)
	MemoryMiB int64
	Healthy   bool // unhealthy GPUs are never given to new work
	// Island groups GPUs joined by NVLink/NVSwitch: GPUs with the same island
	// talk over NVLink, others over PCIe. One island per node is common.
	Island int
}

// NodeInfo is one node of the cluster.
type NodeInfo struct {
	Name      string
	CPUMilli  int64
	MemoryMiB int64
	GPUModel  string // one model per node
	GPUs      []GPUInfo
	// Unschedulable (cordoned) nodes keep their work but get no new work.
	Unschedulable bool
}

// UniformNode builds a node whose GPUs are all healthy, of one model, in one
// NVLink island: the common case, and what the trace simulator uses.
func UniformNode(name string, cpuMilli, memMiB int64, model string, gpus int) NodeInfo {
	n := NodeInfo{Name: name, CPUMilli: cpuMilli, MemoryMiB: memMiB, GPUModel: model}
	for i := range gpus {
		n.GPUs = append(n.GPUs, GPUInfo{Index: i, Healthy: true})
	}
	return n
}

// Validate reports the first field out of its limits.
func (n *NodeInfo) Validate() error {
	switch {
	case n.Name == "":
		return fmt.Errorf("node name: must not be empty")
	case n.CPUMilli < 0:
		return fmt.Errorf("node %s cpu_milli %d: must be >= 0", n.Name, n.CPUMilli)
	case n.MemoryMiB < 0:
		return fmt.Errorf("node %s memory_mib %d: must be >= 0", n.Name, n.MemoryMiB)
	case len(n.GPUs) > MaxGPUsPerNode:
		return fmt.Errorf("node %s gpus %d: at most %d per node", n.Name, len(n.GPUs), MaxGPUsPerNode)
	}
	seen := map[int]bool{}
	for _, g := range n.GPUs {
		if seen[g.Index] {
			return fmt.Errorf("node %s gpu index %d: duplicate", n.Name, g.Index)
		}
		seen[g.Index] = true
	}
	return nil
}

// GPUShare is the part of one GPU a binding takes.
type GPUShare struct {
	Index int   // device index on the node
	Milli int64 // 1..1000
}

// Binding places one worker (or one task) of a job on a node.
type Binding struct {
	Job       string
	Worker    int // rank within the job, 0-based
	Node      string
	CPUMilli  int64
	MemoryMiB int64
	GPUs      []GPUShare
}

// Job is a gang: Workers identical workers, placed all at once or not at all.
type Job struct {
	Name     string
	Queue    string // empty: no queue (no quota applies)
	Priority int32  // higher goes first and may preempt lower
	Workers  int
	Worker   Request   // what each worker needs
	Created  time.Time // first-come first-served within a priority
	// Evictions counts how often the job was preempted; past a limit it is
	// never chosen again, so it cannot starve.
	Evictions int
}

// GPUMilli is the GPU milli the whole gang takes.
func (j *Job) GPUMilli() int64 { return int64(j.Workers) * j.Worker.TotalGPUMilli() }

// Validate reports the first field out of its limits.
func (j *Job) Validate() error {
	if j.Name == "" {
		return fmt.Errorf("job name: must not be empty")
	}
	if j.Workers < 1 {
		return fmt.Errorf("job %s workers %d: must be >= 1", j.Name, j.Workers)
	}
	if err := j.Worker.Validate(); err != nil {
		return fmt.Errorf("job %s worker %w", j.Name, err)
	}
	return nil
}

// RunningJob is a job that holds resources.
type RunningJob struct {
	Job
	Bindings []Binding
	Started  time.Time
	// LastCheckpoint is when the job last saved a checkpoint; zero means never,
	// so everything since Started would be lost by an eviction.
	LastCheckpoint time.Time
	// Terminating jobs are already being evicted: they still hold their
	// resources until their grace period ends, and are never chosen again.
	Terminating bool
}

// LostWork is the work an eviction at now would throw away.
func (r *RunningJob) LostWork(now time.Time) time.Duration {
	since := r.LastCheckpoint
	if since.IsZero() || since.Before(r.Started) {
		since = r.Started
	}
	if now.Before(since) {
		return 0
	}
	return now.Sub(since)
}

// Queue is a tenant's share of the cluster's GPUs (Kueue's ClusterQueue).
type Queue struct {
	Name string
	// NominalGPUMilli is the queue's guaranteed GPU quota.
	NominalGPUMilli int64
	// Weight sets the queue's fair share of idle quota others can borrow.
	Weight float64
	// BorrowingLimitGPUMilli caps what the queue may use beyond its nominal
	// quota; negative means no limit, zero means no borrowing.
	BorrowingLimitGPUMilli int64
}

// Validate reports the first field out of its limits.
func (q *Queue) Validate() error {
	switch {
	case q.Name == "":
		return fmt.Errorf("queue name: must not be empty")
	case q.NominalGPUMilli < 0:
		return fmt.Errorf("queue %s nominal_gpu_milli %d: must be >= 0", q.Name, q.NominalGPUMilli)
	case q.Weight < 0:
		return fmt.Errorf("queue %s weight %g: must be >= 0", q.Name, q.Weight)
	}
	return nil
}

// Snapshot is everything the core needs to make one plan. The Kubernetes
// controller builds it from Nodes (with the GPU agent's inventory), Queues
// and TrainingJobs; the local executor from its process table.
type Snapshot struct {
	Now     time.Time
	Nodes   []NodeInfo
	Queues  []Queue
	Running []RunningJob
	Pending []Job
}

// Preemption asks the executor to evict a job so that another can run.
type Preemption struct {
	Victim string // job to evict
	For    string // job that needs the room
	// GracePeriod is how long the victim has to checkpoint before it is
	// killed; Deadline is Now + GracePeriod.
	GracePeriod time.Duration
	Deadline    time.Time
	LostWork    time.Duration // work since the victim's last checkpoint
}

// PendingJob is a job the plan leaves waiting, and why.
type PendingJob struct {
	Job    string
	Reason string
}

// Plan is the core's output: apply the bindings, start the evictions, and
// keep the pending jobs for the next round.
type Plan struct {
	Bindings    []Binding
	Preemptions []Preemption
	Pending     []PendingJob
}
