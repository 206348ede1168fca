// Package kube starts and stops a real single-node Kubernetes cluster on this
// machine, from the tools cache and Debian's packages, for tests, benches and
// `make cluster`:
//
//   - etcd and kube-apiserver (RBAC, the PodSecurity admission on), with a
//     CA, serving and client certificates and a service-account key made at
//     start;
//   - kube-controller-manager and kube-scheduler;
//   - containerd (its own config, root, state and socket) running pods under
//     runc, with CNI bridge networking from Debian's containernetworking-plugins;
//   - a kubelet on that containerd, cgroupfs driver (this machine has cgroup v1);
//   - kube-proxy in iptables mode, so ClusterIP Services answer from the host
//     and from pods;
//   - CoreDNS as a host process on the node's address, answering cluster.local
//     (Services and per-pod headless names) for pods, forwarding nothing out.
//
// There is no registry: images are OCI archives (scripts/ociimage.sh) that
// Cluster.ImportImages loads into containerd, and pods use them with
// imagePullPolicy Never or IfNotPresent.
//
// Only one cluster runs on a machine at a time: the bridge, the iptables
// chains and port 53 of the node's address are machine-wide. Start takes a
// file lock and waits for it. Stop tears the cluster down so a second start
// on the same machine begins clean: pods are stopped through the CRI (CNI
// teardown included), then every process, mount, network namespace, bridge,
// iptables chain and cgroup the cluster made is removed; Start also clears
// whatever a crashed earlier cluster left.
package kube
