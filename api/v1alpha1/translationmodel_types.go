package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TranslationModel says which release of a model serving runs
// (models/<model>/releases/<n>.json in object storage) and how far the
// rollout to it has got. Promotion writes spec.release; serving replicas
// report the rollout in status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tm,categories=babelfish
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`
// +kubebuilder:printcolumn:name="Release",type=integer,JSONPath=`.spec.release`
// +kubebuilder:printcolumn:name="Serving",type=integer,JSONPath=`.status.currentRelease`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.status.rolloutState`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TranslationModel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   TranslationModelSpec   `json:"spec"`
	Status TranslationModelStatus `json:"status,omitempty"`
}

// RolloutStrategy says how replicas move to a new release.
// +kubebuilder:validation:Enum=Rolling;Canary
type RolloutStrategy string

// Rollout strategies.
const (
	// RolloutRolling swaps replicas a few at a time, each warming up the
	// new release before it takes traffic.
	RolloutRolling RolloutStrategy = "Rolling"
	// RolloutCanary moves CanaryPercent of traffic first and waits.
	RolloutCanary RolloutStrategy = "Canary"
)

// TranslationModelSpec names the release to serve.
//
// +kubebuilder:validation:XValidation:rule="!has(self.strategy) || self.strategy != 'Canary' || has(self.canaryPercent)",fieldPath=".canaryPercent",message="canaryPercent is required when strategy is Canary"
type TranslationModelSpec struct {
	// Model is the model's name in object storage (models/<model>/).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-_.a-z0-9]*[a-z0-9])?$`
	Model string `json:"model"`
	// Release is the release number to serve; unset follows the model's
	// `current` pointer.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Release *int64 `json:"release,omitempty"`
	// +optional
	// +kubebuilder:default=Rolling
	Strategy RolloutStrategy `json:"strategy,omitempty"`
	// CanaryPercent is the share of traffic the new release takes first.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	CanaryPercent *int32 `json:"canaryPercent,omitempty"`
}

// RolloutState is how far a rollout has got.
// +kubebuilder:validation:Enum=Pending;Progressing;Complete;Failed;RolledBack
type RolloutState string

// Rollout states.
const (
	RolloutPending     RolloutState = "Pending"
	RolloutProgressing RolloutState = "Progressing"
	RolloutComplete    RolloutState = "Complete"
	RolloutFailed      RolloutState = "Failed"
	RolloutRolledBack  RolloutState = "RolledBack"
)

// TranslationModelStatus is what the serving replicas report.
type TranslationModelStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// CurrentRelease is the release every ready replica serves.
	// +optional
	CurrentRelease int64 `json:"currentRelease,omitempty"`
	// +optional
	RolloutState RolloutState `json:"rolloutState,omitempty"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// UpdatedReplicas serve the release in spec.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TranslationModelList is a list of TranslationModels.
//
// +kubebuilder:object:root=true
type TranslationModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TranslationModel `json:"items"`
}
