package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Queue is a tenant's share of the cluster's GPUs, as Kueue's ClusterQueue:
// a nominal quota the tenant is guaranteed, a weight for its fair share of
// the quota others leave idle, and a cap on how much of that it may borrow.
// TrainingJobs name their Queue in spec.queue. Queues are cluster-scoped.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bfq,categories=babelfish
// +kubebuilder:printcolumn:name="Nominal",type=integer,JSONPath=`.status.nominalGPUMilli`,description="nominal quota in GPU milli"
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.spec.weight`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.usedGPUMilli`,description="GPU milli held by admitted jobs"
// +kubebuilder:printcolumn:name="Borrowed",type=integer,JSONPath=`.status.borrowedGPUMilli`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.admittedJobs`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pendingJobs`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Queue struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   QueueSpec   `json:"spec"`
	Status QueueStatus `json:"status,omitempty"`
}

// QueueSpec is a queue's quota. The quota is given either in whole GPUs
// (nominalGPUs) or in thousandths of a GPU (nominalGPUMilli), not both.
//
// +kubebuilder:validation:XValidation:rule="has(self.nominalGPUs) != has(self.nominalGPUMilli)",message="exactly one of nominalGPUs and nominalGPUMilli must be set"
type QueueSpec struct {
	// NominalGPUs is the guaranteed quota in whole GPUs.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	NominalGPUs *int32 `json:"nominalGPUs,omitempty"`
	// NominalGPUMilli is the guaranteed quota in thousandths of a GPU.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000000
	NominalGPUMilli *int64 `json:"nominalGPUMilli,omitempty"`
	// Weight is the queue's share, against other queues, of the quota they
	// leave idle: the queue borrowing least for its weight goes first.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Weight int32 `json:"weight,omitempty"`
	// BorrowingLimitGPUMilli caps what the queue may use beyond its nominal
	// quota, in GPU milli; unset means no cap, 0 means no borrowing.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000000
	BorrowingLimitGPUMilli *int64 `json:"borrowingLimitGPUMilli,omitempty"`
}

// NominalMilli is the nominal quota in GPU milli.
func (s *QueueSpec) NominalMilli() int64 {
	switch {
	case s.NominalGPUMilli != nil:
		return *s.NominalGPUMilli
	case s.NominalGPUs != nil:
		return int64(*s.NominalGPUs) * 1000
	}
	return 0
}

// Condition types of a Queue.
const (
	// QueueConditionActive is True while the scheduler admits through the
	// queue.
	QueueConditionActive = "Active"
)

// QueueStatus is the queue's use, as the scheduler last saw it.
type QueueStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// NominalGPUMilli is the quota in GPU milli, whichever way the spec
	// gives it.
	// +optional
	NominalGPUMilli int64 `json:"nominalGPUMilli,omitempty"`
	// UsedGPUMilli is held by the queue's admitted jobs.
	// +optional
	UsedGPUMilli int64 `json:"usedGPUMilli,omitempty"`
	// BorrowedGPUMilli is the part of UsedGPUMilli beyond the nominal quota.
	// +optional
	BorrowedGPUMilli int64 `json:"borrowedGPUMilli,omitempty"`
	// AdmittedJobs hold a placement; PendingJobs wait for one.
	// +optional
	AdmittedJobs int32 `json:"admittedJobs,omitempty"`
	// +optional
	PendingJobs int32 `json:"pendingJobs,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// QueueList is a list of Queues.
//
// +kubebuilder:object:root=true
type QueueList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Queue `json:"items"`
}
