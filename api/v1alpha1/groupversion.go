package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of every type in this package.
const (
	Group   = "babelfish.dev"
	Version = "v1alpha1"
)

// GroupVersion is Group and Version together.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// AddToScheme adds the types of this package to a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&TrainingJob{}, &TrainingJobList{},
		&Queue{}, &QueueList{},
		&TranslationModel{}, &TranslationModelList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
