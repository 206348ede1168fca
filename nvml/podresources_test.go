package nvml_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"babelfish.dev/babelfish/nvml"
)

// kubelet is a pod-resources server as the kubelet runs it: the v1
// PodResourcesLister service on a unix socket.
type kubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	mu    sync.Mutex
	pods  []*podresourcesv1.PodResources
	calls int
}

func (k *kubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	return &podresourcesv1.ListPodResourcesResponse{PodResources: k.pods}, nil
}

func (k *kubelet) set(pods ...*podresourcesv1.PodResources) {
	k.mu.Lock()
	k.pods = pods
	k.mu.Unlock()
}

func pod(ns, name, ctr, resource string, ids ...string) *podresourcesv1.PodResources {
	return &podresourcesv1.PodResources{Namespace: ns, Name: name, Containers: []*podresourcesv1.ContainerResources{{
		Name:    ctr,
		Devices: []*podresourcesv1.ContainerDevices{{ResourceName: resource, DeviceIds: ids}},
	}}}
}

// startKubelet serves k on a fresh unix socket; stop ends the server.
func startKubelet(t *testing.T, k *kubelet) (socket string, stop func()) {
	t.Helper()
	// unix socket paths are limited to about 100 bytes: keep it short
	dir, err := os.MkdirTemp("", "pr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket = filepath.Join(dir, "kubelet.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, k)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Stop(); <-done }) }
	t.Cleanup(stop)
	return socket, stop
}

func TestPodAttribution(t *testing.T) {
	k := &kubelet{}
	socket, stop := startKubelet(t, k)
	client, err := nvml.DialPodResources(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	r := newRig(t, "dgxa100", func(c *nvml.Config) { c.PodLister = client })
	u := r.fake.UUID
	k.set(
		pod("research", "train-0", "worker", "nvidia.com/gpu", u(0), u(1)),
		// time-sliced GPU 2, shared by two pods (device plugin replicas)
		pod("serve", "tts-b", "server", "nvidia.com/gpu.shared", u(2)+"::1"),
		pod("serve", "tts-a", "server", "nvidia.com/gpu.shared", u(2)+"::0"),
		// another resource that happens to name GPU 3: not a GPU grant
		pod("infra", "fpga", "x", "example.com/fpga", u(3)),
	)
	r.agent.Sample(t.Context())
	m := gather(t, r.agent.Collector())

	cases := []struct {
		gpu                string
		ns, pod, container string
		infoSeries         int
	}{
		{"0", "research", "train-0", "worker", 1},
		{"1", "research", "train-0", "worker", 1},
		{"2", "serve", "tts-a", "server", 2}, // first holder by name labels the series
		{"3", "", "", "", 0},
		{"7", "", "", "", 0},
	}
	for _, c := range cases {
		sel := labels("gpu", c.gpu, "namespace", c.ns, "pod", c.pod, "container", c.container)
		for _, name := range []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "babelfish_gpu_healthy"} {
			if s := m.series(name, sel); len(s) != 1 {
				t.Errorf("gpu %s %s with pod labels %v: %d series, want 1", c.gpu, name, sel, len(s))
			}
		}
		if s := m.series("babelfish_gpu_pod_info", labels("gpu", c.gpu)); len(s) != c.infoSeries {
			t.Errorf("gpu %s: %d pod_info series, want %d", c.gpu, len(s), c.infoSeries)
		}
	}
	if s := m.series("babelfish_gpu_pod_info", labels("gpu", "2", "pod", "tts-b", "namespace", "serve", "container", "server")); len(s) != 1 {
		t.Errorf("second holder of gpu 2 missing from pod_info")
	}

	// The pod finishes: its labels go.
	k.set(pod("serve", "tts-a", "server", "nvidia.com/gpu", u(2)))
	r.agent.Sample(t.Context())
	m = gather(t, r.agent.Collector())
	if s := m.series("DCGM_FI_DEV_GPU_UTIL", labels("gpu", "0", "pod", "")); len(s) != 1 {
		t.Errorf("gpu 0 still labelled after its pod ended")
	}
	if g := gpuByIndex(t, r.agent, 2); len(g.Pods) != 1 || g.Pods[0] != (nvml.PodRef{Namespace: "serve", Pod: "tts-a", Container: "server"}) {
		t.Errorf("gpu 2 pods %+v", g.Pods)
	}

	// The kubelet goes away: the last answer stays, the error is counted.
	stop()
	r.agent.Sample(t.Context())
	m = gather(t, r.agent.Collector())
	if got := m.value(t, "babelfish_gpu_agent_pod_resources_errors_total", nil); got < 1 {
		t.Errorf("pod-resources errors = %v, want >= 1", got)
	}
	if s := m.series("DCGM_FI_DEV_GPU_UTIL", labels("gpu", "2", "pod", "tts-a")); len(s) != 1 {
		t.Errorf("gpu 2 lost its pod label when the kubelet went away")
	}
	k.mu.Lock()
	calls := k.calls
	k.mu.Unlock()
	if calls < 2 {
		t.Errorf("kubelet saw %d List calls, want >= 2", calls)
	}
}

func TestGPUPodsFromList(t *testing.T) {
	resp := &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{
		pod("a", "p", "c", "nvidia.com/gpu", "GPU-1", "GPU-1::3"), // the same GPU twice collapses
		pod("a", "p", "c2", "nvidia.com/gpuz", "GPU-2"),           // not ours: a prefix, not a rename
		{Namespace: "a", Name: "empty"},
	}}
	got := nvml.GPUPodsFromList(resp)
	if len(got) != 1 || len(got["GPU-1"]) != 1 || got["GPU-1"][0] != (nvml.PodRef{Namespace: "a", Pod: "p", Container: "c"}) {
		t.Fatalf("got %+v", got)
	}
}

func TestDialPodResourcesEmpty(t *testing.T) {
	if _, err := nvml.DialPodResources(""); err == nil {
		t.Fatal("empty socket: want an error")
	}
}
