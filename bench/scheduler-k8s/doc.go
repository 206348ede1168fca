// Command scheduler-k8s measures the Kubernetes side of the scheduler end
// to end: worker pods bound per second through a real kube-apiserver and
// etcd (from the tools cache), by the scheduler placing TrainingJob gangs,
// beside a baseline measured in the same run on the same control plane:
// plain client-go creating and binding the same pods, gang by gang, with
// the same parallelism and no scheduling at all.
//
//	go run ./bench/scheduler-k8s [-nodes 200] [-gpus 8] [-jobs 250] [-workers 4] [-rounds 3] [-parallelism 16]
//
// Run it from the repository root: the CRDs come from charts/babelfish/crds.
package main
