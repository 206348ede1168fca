package nvml

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// DefaultPodResourcesSocket is where the kubelet serves its pod-resources
// API.
const DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// GPUResourceName is the extended resource of NVIDIA's device plugin. Device
// plugins that share GPUs rename it (nvidia.com/gpu.shared) and number the
// replicas of a GPU (UUID::0, UUID::1); both are understood.
const GPUResourceName = "nvidia.com/gpu"

// podResourcesMaxMsg bounds a List answer: a node with hundreds of pods
// stays far below it.
const podResourcesMaxMsg = 16 << 20

// PodRef is a container that holds a GPU.
type PodRef struct {
	Namespace string
	Pod       string
	Container string
}

// PodLister says which containers hold which GPUs, keyed by GPU UUID.
type PodLister interface {
	GPUPods(ctx context.Context) (map[string][]PodRef, error)
}

// PodResourcesClient asks the kubelet's pod-resources API (the v1
// PodResourcesLister service on a unix socket) which containers were given
// which GPUs.
type PodResourcesClient struct {
	conn   *grpc.ClientConn
	client podresourcesv1.PodResourcesListerClient
}

// DialPodResources connects to the kubelet's pod-resources socket. The
// connection is made lazily: a missing socket shows as an error of GPUPods.
func DialPodResources(socket string) (*PodResourcesClient, error) {
	if socket == "" {
		return nil, fmt.Errorf("pod-resources socket: must not be empty")
	}
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, fmt.Errorf("pod-resources socket %q: %w", socket, err)
	}
	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(podResourcesMaxMsg)))
	if err != nil {
		return nil, fmt.Errorf("pod-resources socket %s: %w", abs, err)
	}
	return &PodResourcesClient{conn: conn, client: podresourcesv1.NewPodResourcesListerClient(conn)}, nil
}

// GPUPods lists the pods and maps each GPU UUID to the containers holding it.
func (c *PodResourcesClient) GPUPods(ctx context.Context) (map[string][]PodRef, error) {
	resp, err := c.client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("pod-resources list: %w", err)
	}
	return GPUPodsFromList(resp), nil
}

// Close closes the connection.
func (c *PodResourcesClient) Close() error { return c.conn.Close() }

// GPUPodsFromList maps GPU UUIDs to the containers a List answer gives them,
// each list sorted so labels do not flap between scrapes.
func GPUPodsFromList(resp *podresourcesv1.ListPodResourcesResponse) map[string][]PodRef {
	out := map[string][]PodRef{}
	for _, p := range resp.GetPodResources() {
		for _, ctr := range p.GetContainers() {
			for _, d := range ctr.GetDevices() {
				rn := d.GetResourceName()
				if rn != GPUResourceName && !strings.HasPrefix(rn, GPUResourceName+".") {
					continue
				}
				for _, id := range d.GetDeviceIds() {
					uuid, _, _ := strings.Cut(id, "::")
					ref := PodRef{Namespace: p.GetNamespace(), Pod: p.GetName(), Container: ctr.GetName()}
					if !slices.Contains(out[uuid], ref) {
						out[uuid] = append(out[uuid], ref)
					}
				}
			}
		}
	}
	for _, refs := range out {
		slices.SortFunc(refs, func(a, b PodRef) int {
			return strings.Compare(a.Namespace+"/"+a.Pod+"/"+a.Container, b.Namespace+"/"+b.Pod+"/"+b.Container)
		})
	}
	return out
}
