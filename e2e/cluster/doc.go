// Package cluster holds the end-to-end tests on a real single-node
// Kubernetes cluster (internal/kube): pods of the project's image under a
// kubelet on containerd, Services and DNS, the Helm chart installed into a
// Pod Security "restricted" namespace with its in-cluster MinIO, a release
// served through the serving Service, a rolling upgrade and runtime
// restarts under load with no failed request, bad input that leaves nothing
// behind, and a clean stop.
//
// TestCluster runs the steps in order on one cluster; the last one stops
// it. They need root and the tools cache (`make tools`).
package cluster
