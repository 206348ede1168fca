// Package deps pins the project's core dependencies until the packages that
// use them land; it is removed once each is imported for real.
package deps

import (
	_ "github.com/NVIDIA/go-nvml/pkg/nvml"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "gonum.org/v1/gonum/dsp/fourier"
	_ "google.golang.org/grpc"
	_ "gorgonia.org/gorgonia"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/yaml"
)
