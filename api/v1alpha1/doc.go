// Package v1alpha1 holds Babelfish's Kubernetes API types, group
// babelfish.dev, version v1alpha1: TrainingJob (a gang of trainer ranks the
// scheduler admits through a Queue and places all at once), Queue (a
// tenant's GPU quota, fair-share weight and borrowing limit) and
// TranslationModel (which model release serving runs, and its rollout).
//
// The CustomResourceDefinitions in charts/babelfish/crds are generated from
// these types by scripts/gencrd.sh (controller-gen), so the kubebuilder
// markers here are the API server's validation: a bad spec is rejected
// before it reaches the scheduler, with a message naming the field.
//
// Status is shared between two writers: the scheduler owns the phase,
// placement, restarts, conditions and timestamps; rank 0 of the trainer
// owns step, loss, evalMetrics and latestCheckpoint. Each writes only its
// own fields with a merge patch of the status subresource.
//
// +kubebuilder:object:generate=true
// +groupName=babelfish.dev
package v1alpha1
