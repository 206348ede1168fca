package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Limits of a TrainingJob, mirrored in the validation markers below.
const (
	MaxWorkers       = 1024 // ranks in one gang
	MaxGPUsPerWorker = 64   // the scheduler's 64-bit GPU sets
	MaxPriority      = 1000
	MaxBackoffLimit  = 100
	// MaxNameLength keeps "<name>-<rank>" (the pod hostname) and the
	// headless Service name within a 63-character DNS label.
	MaxNameLength = 40
	// DefaultRendezvousPort is where rank 0 listens for the other ranks.
	DefaultRendezvousPort = 29500
)

// TrainingJob is a distributed training run: Workers ranks of the trainer,
// each with GPUsPerWorker GPUs, admitted through a Queue and placed as a
// gang (all ranks or none), restarted as a whole from its last checkpoint
// when a rank fails.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tj,categories=babelfish
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.queue`
// +kubebuilder:printcolumn:name="Workers",type=integer,JSONPath=`.spec.workers`
// +kubebuilder:printcolumn:name="GPUs/Worker",type=integer,JSONPath=`.spec.gpusPerWorker`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`,priority=1
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Loss",type=number,JSONPath=`.status.loss`
// +kubebuilder:printcolumn:name="Restarts",type=integer,JSONPath=`.status.restarts`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name: at most 40 characters (pod hostnames are <name>-<rank>)"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name: must be a DNS-1035 label (lower case letters, digits and '-', starting with a letter): it names the job's headless Service"
type TrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   TrainingJobSpec   `json:"spec"`
	Status TrainingJobStatus `json:"status,omitempty"`
}

// TrainingJobSpec is what the researcher asks for.
//
// +kubebuilder:validation:XValidation:rule="!has(self.gpuMilli) || self.gpusPerWorker == 1",fieldPath=".gpuMilli",message="gpuMilli (a share of one GPU) needs gpusPerWorker: 1"
// +kubebuilder:validation:XValidation:rule="has(self.gpuMilli) == has(oldSelf.gpuMilli) && (!has(self.gpuMilli) || self.gpuMilli == oldSelf.gpuMilli)",fieldPath=".gpuMilli",message="gpuMilli is immutable"
type TrainingJobSpec struct {
	// Dataset is the sharded dataset version the ranks read.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="dataset is immutable"
	Dataset DatasetRef `json:"dataset"`

	// Model is the model to train and its training hyperparameters.
	// +required
	Model ModelConfig `json:"model"`

	// Workers is the number of ranks; they are placed all at once or not at
	// all.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="workers is immutable"
	Workers int32 `json:"workers"`

	// GPUsPerWorker is the number of GPUs each rank gets; 0 runs on CPUs.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="gpusPerWorker is immutable"
	GPUsPerWorker int32 `json:"gpusPerWorker"`

	// GPUMilli shares one GPU: each rank takes this many thousandths of it
	// (needs gpusPerWorker: 1). Unset means whole GPUs.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	GPUMilli *int32 `json:"gpuMilli,omitempty"`

	// GPUModels lists the GPU models (as the GPU agent reports them) the
	// ranks accept; empty accepts any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	GPUModels []string `json:"gpuModels,omitempty"`

	// Queue is the Queue the job is admitted through; its quota bounds the
	// GPUs the job may hold. Empty means no queue (no quota applies).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="queue is immutable"
	Queue string `json:"queue,omitempty"`

	// Priority orders jobs (higher first); a higher-priority job that cannot
	// fit may preempt lower-priority ones.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`

	// CheckpointInterval is how often rank 0 saves a checkpoint; a failure
	// or a preemption costs at most this much work.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="checkpointInterval must be between 10s and 24h"
	CheckpointInterval *metav1.Duration `json:"checkpointInterval,omitempty"`

	// Promotion says whether a finished job's checkpoint becomes a model
	// release by itself.
	// +optional
	// +kubebuilder:default={}
	Promotion PromotionPolicy `json:"promotion,omitempty"`

	// Template is the container every rank runs.
	// +required
	Template WorkerTemplate `json:"template"`

	// BackoffLimit is how many times the gang is restarted after a rank
	// fails before the job is Failed.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
}

// DatasetRef names an immutable dataset version in object storage
// (datasets/<name>/<version>/).
type DatasetRef struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$`
	Version string `json:"version"`
}

// ModelConfig is the model and how to train it. The fields the scheduler
// and the API server check are named; Parameters carries the rest (the
// model's shape) to the trainer as it is.
type ModelConfig struct {
	// Name is the model's name in object storage (models/<name>/); the
	// default is the job's name.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// Languages the model translates between (ISO 639 codes, optionally
	// with a region or script).
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=2
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:Pattern=`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`
	Languages []string `json:"languages"`

	// Steps is the number of optimizer steps to train for.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	Steps int64 `json:"steps"`

	// BatchSize is the global batch (all ranks together), in utterances.
	// +optional
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	BatchSize int32 `json:"batchSize,omitempty"`

	// LearningRate of the optimizer.
	// +optional
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	LearningRate *float64 `json:"learningRate,omitempty"`

	// Seed makes initialisation and data order reproducible.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Seed int64 `json:"seed,omitempty"`

	// Parameters is the model's shape as the trainer reads it (JSON).
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Parameters *runtime.RawExtension `json:"parameters,omitempty"`
}

// PromotionMode says who promotes a checkpoint to a model release.
// +kubebuilder:validation:Enum=Manual;Auto
type PromotionMode string

// Promotion modes.
const (
	PromotionManual PromotionMode = "Manual"
	PromotionAuto   PromotionMode = "Auto"
)

// MetricGoal says which way a metric improves.
// +kubebuilder:validation:Enum=Maximize;Minimize
type MetricGoal string

// Metric goals.
const (
	Maximize MetricGoal = "Maximize"
	Minimize MetricGoal = "Minimize"
)

// PromotionPolicy decides when a checkpoint becomes the model's release.
//
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'Auto' || has(self.metric)",fieldPath=".metric",message="metric is required when mode is Auto"
type PromotionPolicy struct {
	// Mode Manual leaves promotion to `babelfish promote`; Auto promotes the
	// best checkpoint by Metric when it beats the current release.
	// +optional
	// +kubebuilder:default=Manual
	Mode PromotionMode `json:"mode,omitempty"`
	// Metric is the eval metric Auto compares (a key of
	// status.evalMetrics, e.g. concept_accuracy or mcd).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_]*$`
	Metric string `json:"metric,omitempty"`
	// Goal says whether a larger or a smaller Metric is better.
	// +optional
	// +kubebuilder:default=Maximize
	Goal MetricGoal `json:"goal,omitempty"`
}

// WorkerTemplate is the container each rank runs.
type WorkerTemplate struct {
	// Image of the trainer (the babelfish image runs `babelfish trainer`).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Command overrides the image's entrypoint.
	// +optional
	Command []string `json:"command,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`
	// Env is added to every rank; the scheduler's BABELFISH_* variables
	// come after it and win.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Resources each rank requests besides its GPUs.
	// +optional
	Resources WorkerResources `json:"resources,omitempty"`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// RendezvousPort is where rank 0 listens for the other ranks.
	// +optional
	// +kubebuilder:default=29500
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	RendezvousPort int32 `json:"rendezvousPort,omitempty"`
}

// WorkerResources is the CPU and memory one rank requests.
//
// +kubebuilder:validation:XValidation:rule="!has(self.cpu) || !quantity(string(self.cpu)).isLessThan(quantity('0'))",fieldPath=".cpu",message="cpu must not be negative"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || !quantity(string(self.memory)).isLessThan(quantity('0'))",fieldPath=".memory",message="memory must not be negative"
type WorkerResources struct {
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// TrainingJobPhase is where a job is in its life.
// +kubebuilder:validation:Enum=Pending;Admitted;Running;Restarting;Preempted;Succeeded;Failed
type TrainingJobPhase string

// Phases of a TrainingJob.
const (
	// Pending: waiting for quota or room.
	PhasePending TrainingJobPhase = "Pending"
	// Admitted: placed; pods created and bound, not all running yet.
	PhaseAdmitted TrainingJobPhase = "Admitted"
	// Running: every rank runs.
	PhaseRunning TrainingJobPhase = "Running"
	// Restarting: a rank failed; the gang is torn down and waits out its
	// backoff before it is placed again from its last checkpoint.
	PhaseRestarting TrainingJobPhase = "Restarting"
	// Preempted: evicted for a higher-priority job; waits to be placed
	// again.
	PhasePreempted TrainingJobPhase = "Preempted"
	// Succeeded: rank 0 exited 0.
	PhaseSucceeded TrainingJobPhase = "Succeeded"
	// Failed: the gang failed more than backoffLimit times.
	PhaseFailed TrainingJobPhase = "Failed"
)

// Terminal reports whether the phase is final.
func (p TrainingJobPhase) Terminal() bool { return p == PhaseSucceeded || p == PhaseFailed }

// Condition types of a TrainingJob.
const (
	// ConditionAdmitted is True while the gang holds a placement; False
	// says why it waits (quota, room, backoff, preemption).
	ConditionAdmitted = "Admitted"
	// ConditionRunning is True while every rank runs.
	ConditionRunning = "Running"
	// ConditionPreempted is True from an eviction until the job is placed
	// again; its message names the job it made room for and the work lost.
	ConditionPreempted = "Preempted"
	// ConditionSucceeded and ConditionFailed are set once, at the end.
	ConditionSucceeded = "Succeeded"
	ConditionFailed    = "Failed"
)

// WorkerPlacement is where one rank runs.
type WorkerPlacement struct {
	Rank int32  `json:"rank"`
	Pod  string `json:"pod"`
	Node string `json:"node"`
	// GPUs are the device indices (NVML's) on the node.
	// +optional
	// +listType=atomic
	GPUs []int32 `json:"gpus,omitempty"`
	// GPUMilli is the share of each GPU taken (1000 for whole GPUs).
	// +optional
	GPUMilli int32 `json:"gpuMilli,omitempty"`
}

// CheckpointRef is a checkpoint in object storage.
type CheckpointRef struct {
	Step int64 `json:"step"`
	// Path is the checkpoint's prefix (checkpoints/<job>/<step>/).
	Path string `json:"path"`
	// Time is when its manifest was written.
	Time metav1.Time `json:"time"`
}

// TrainingJobStatus is what the scheduler and the trainer report.
type TrainingJobStatus struct {
	// ObservedGeneration is the spec generation the scheduler acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase TrainingJobPhase `json:"phase,omitempty"`
	// GangGeneration counts placements of the gang; it names the pods
	// (<job>-<gangGeneration>-<rank>), so a re-created pod of the same
	// placement collides with its first copy instead of duplicating it.
	// +optional
	GangGeneration int32 `json:"gangGeneration,omitempty"`
	// Placement is where each rank of the current gang runs.
	// +optional
	// +listType=map
	// +listMapKey=rank
	Placement []WorkerPlacement `json:"placement,omitempty"`
	// Restarts counts gang restarts after a rank failed.
	// +optional
	Restarts int32 `json:"restarts,omitempty"`
	// Evictions counts preemptions; past the scheduler's limit the job is
	// never preempted again.
	// +optional
	Evictions int32 `json:"evictions,omitempty"`
	// PreemptedBy is the job (namespace/name) the last preemption made
	// room for, until this job is placed again.
	// +optional
	PreemptedBy string `json:"preemptedBy,omitempty"`
	// +optional
	AdmittedAt *metav1.Time `json:"admittedAt,omitempty"`
	// StartedAt is when every rank of the current gang first ran.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// NextRestartAt is when a Restarting gang may be placed again.
	// +optional
	NextRestartAt *metav1.Time `json:"nextRestartAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// Step, Loss, EvalMetrics and LatestCheckpoint are written by rank 0.
	// +optional
	Step int64 `json:"step,omitempty"`
	// +optional
	Loss *float64 `json:"loss,omitempty"`
	// +optional
	EvalMetrics map[string]float64 `json:"evalMetrics,omitempty"`
	// +optional
	LatestCheckpoint *CheckpointRef `json:"latestCheckpoint,omitempty"`

	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrainingJobList is a list of TrainingJobs.
//
// +kubebuilder:object:root=true
type TrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrainingJob `json:"items"`
}
