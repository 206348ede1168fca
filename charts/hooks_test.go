package charts

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestRenderedTestHooks: `helm test` renders one hook Pod per part of the
// release, each running `babelfish check` from the chart's image against a
// Service port the release renders, and none when tests.enabled is false.
func TestRenderedTestHooks(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // components of the test Pods, sorted
	}{
		{"defaults", []string{"-f", chartDir + "/ci/default-values.yaml"}, []string{"test-dashboard", "test-dashboard-state", "test-gpu-agent", "test-gpu-agent-metrics", "test-minio", "test-scheduler", "test-serving"}},
		{"local cluster", []string{"-f", chartDir + "/ci/local-cluster-values.yaml"}, []string{"test-dashboard", "test-dashboard-state", "test-gpu-agent", "test-gpu-agent-metrics", "test-minio", "test-scheduler", "test-serving"}},
		{"external store", []string{"-f", chartDir + "/ci/external-minio-tls-values.yaml"}, []string{"test-dashboard", "test-dashboard-state", "test-gpu-agent", "test-gpu-agent-metrics", "test-scheduler", "test-serving"}},
		{"no gpu agent", []string{"-f", chartDir + "/ci/no-gpu-agent-values.yaml"}, []string{"test-dashboard", "test-dashboard-state", "test-minio", "test-scheduler", "test-serving"}},
		{"no dashboard", []string{"--set", "scheduler.dashboard.enabled=false"}, []string{"test-gpu-agent", "test-gpu-agent-metrics", "test-minio", "test-scheduler", "test-serving"}},
		{"custom ports and title", []string{"--set", "scheduler.metricsPort=9000", "--set", "scheduler.dashboard.port=9001", "--set", "scheduler.dashboard.title=Lab <1>",
			"--set", "serving.service.port=8443", "--set", "gpuAgent.port=9500", "--set", "minio.port=9002"}, []string{"test-dashboard", "test-dashboard-state", "test-gpu-agent", "test-gpu-agent-metrics", "test-minio", "test-scheduler", "test-serving"}},
		{"tests off", []string{"--set", "tests.enabled=false"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := render(t, tt.args...)
			services := map[string][]int32{}
			var image string
			for _, o := range objs {
				switch o.GetKind() {
				case "Service":
					ports, _, _ := unstructured.NestedSlice(o.Object, "spec", "ports")
					for _, p := range ports {
						n, _, _ := unstructured.NestedInt64(p.(map[string]any), "port")
						services[o.GetName()] = append(services[o.GetName()], int32(n))
					}
				case "Deployment":
					if o.GetLabels()["app.kubernetes.io/component"] == "scheduler" {
						ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
						image, _, _ = unstructured.NestedString(ctrs[0].(map[string]any), "image")
					}
				}
			}
			var got []string
			for _, o := range objs {
				if o.GetKind() != "Pod" {
					continue
				}
				got = append(got, o.GetLabels()["app.kubernetes.io/component"])
				checkTestPod(t, o, image, services)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("test Pods of components %q; want %q", got, tt.want)
			}
		})
	}
}

// checkTestPod checks one `helm test` Pod: a test hook from the chart's
// image that no Service selects, whose every container runs `babelfish
// check` against a rendered Service's port.
func checkTestPod(t *testing.T, o *unstructured.Unstructured, image string, services map[string][]int32) {
	t.Helper()
	id := "Pod/" + o.GetName()
	var pod corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &pod); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if h := pod.Annotations["helm.sh/hook"]; h != "test" {
		t.Errorf("%s: helm.sh/hook %q; want test", id, h)
	}
	if p := pod.Annotations["helm.sh/hook-delete-policy"]; !strings.Contains(p, "before-hook-creation") {
		t.Errorf("%s: hook-delete-policy %q lacks before-hook-creation (a second `helm test` would fail on the old Pod)", id, p)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q; want Never", id, pod.Spec.RestartPolicy)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it has no use for", id)
	}
	for _, component := range []string{"scheduler", "serving", "gpu-agent", "minio"} {
		sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": release, "app.kubernetes.io/component": component})
		if sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s: labels %v would put it behind the %s Service", id, pod.Labels, component)
		}
	}
	if len(pod.Spec.Containers) == 0 {
		t.Fatalf("%s: no container", id)
	}
	for _, c := range pod.Spec.Containers {
		cid := id + "/" + c.Name
		if c.Image != image {
			t.Errorf("%s: image %q; want the chart's %q (no other image is pulled)", cid, c.Image, image)
		}
		if len(c.Command) != 0 || len(c.Args) < 3 || c.Args[0] != "check" {
			t.Errorf("%s: command %q args %q; want the entrypoint with `check KIND TARGET ...`", cid, c.Command, c.Args)
			continue
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %v; want a CPU request and a memory limit", cid, c.Resources)
		}
		if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--timeout=") }) {
			t.Errorf("%s: args %q lack --timeout", cid, c.Args)
		}
		host, port, err := checkTarget(c.Args[1], c.Args[2])
		if err != nil {
			t.Errorf("%s: %v", cid, err)
			continue
		}
		if !slices.Contains(services[host], port) {
			t.Errorf("%s: checks %s:%d, which is no port of a rendered Service (Services: %v)", cid, host, port, services)
		}
		t.Logf("%s: %s", cid, strings.Join(c.Args, " "))
	}
}

// checkTarget is the host and port a `babelfish check KIND TARGET` probes.
func checkTarget(kind, target string) (string, int32, error) {
	switch kind {
	case "http":
		u, err := url.Parse(target)
		if err != nil {
			return "", 0, err
		}
		target = u.Host
	case "grpc-health":
	default:
		return "", 0, fmt.Errorf("unknown check %q", kind)
	}
	host, p, err := net.SplitHostPort(target)
	if err != nil {
		return "", 0, fmt.Errorf("check %s %s: %w", kind, target, err)
	}
	var port int32
	if _, err := fmt.Sscan(p, &port); err != nil {
		return "", 0, fmt.Errorf("check %s %s: port: %w", kind, target, err)
	}
	return host, port, nil
}

// TestRenderedLocalCluster: the local-cluster values fit one node of 2 CPU
// cores without an image registry, GPU, StorageClass or priority classes.
func TestRenderedLocalCluster(t *testing.T) {
	objs := render(t, "-f", chartDir+"/ci/local-cluster-values.yaml")
	var cpu, mem resource.Quantity
	for _, o := range objs {
		id := o.GetKind() + "/" + o.GetName()
		switch o.GetKind() {
		case "StatefulSet":
			if vct, found, _ := unstructured.NestedSlice(o.Object, "spec", "volumeClaimTemplates"); found || len(vct) > 0 {
				t.Errorf("%s: volumeClaimTemplates %v; no StorageClass would bind them", id, vct)
			}
		case "PersistentVolumeClaim":
			t.Errorf("%s: no StorageClass would bind it", id)
		case "HorizontalPodAutoscaler":
			if n, _, _ := unstructured.NestedInt64(o.Object, "spec", "minReplicas"); n != 2 {
				t.Errorf("%s: minReplicas %d; want 2", id, n)
			}
		}
		for _, p := range podsOf(t, []*unstructured.Unstructured{o}) {
			if p.spec.PriorityClassName != "" || p.spec.RuntimeClassName != nil {
				t.Errorf("%s: priorityClassName %q, runtimeClassName %v; want neither", id, p.spec.PriorityClassName, p.spec.RuntimeClassName)
			}
			for _, c := range p.spec.Containers {
				if c.ImagePullPolicy != corev1.PullNever || !strings.HasSuffix(c.Image, ":dev") {
					t.Errorf("%s/%s: image %q pulled %q; want a :dev image, never pulled", id, c.Name, c.Image, c.ImagePullPolicy)
				}
			}
			if p.component == "gpu-agent" {
				sel := labels.SelectorFromSet(p.spec.NodeSelector)
				if !sel.Matches(labels.Set{"nvidia.com/gpu.present": "true"}) {
					t.Errorf("%s: nodeSelector %v does not pick a node labelled nvidia.com/gpu.present=true", id, p.spec.NodeSelector)
				}
				if !slices.Contains(p.spec.Containers[0].Args, "--fake-gpus=dgxa100") {
					t.Errorf("%s: args %q lack --fake-gpus=dgxa100", id, p.spec.Containers[0].Args)
				}
			}
			if p.component == "minio" && !slices.ContainsFunc(p.spec.Volumes, func(v corev1.Volume) bool { return v.Name == "data" && v.EmptyDir != nil }) {
				t.Errorf("%s: no emptyDir data volume", id)
			}
			// Requests of the running pods (the test Pods run one at a
			// time, after install), times their replicas.
			if o.GetKind() == "Pod" {
				continue
			}
			n := int64(1)
			if r, found, _ := unstructured.NestedInt64(o.Object, "spec", "replicas"); found {
				n = r
			} else if o.GetKind() == "Deployment" {
				n = 2 // serving: the HPA's minReplicas
			}
			for _, c := range p.spec.Containers {
				for range n {
					cpu.Add(*c.Resources.Requests.Cpu())
					mem.Add(*c.Resources.Requests.Memory())
				}
			}
		}
	}
	// Half the node's 2 cores at most: the control plane, CoreDNS and the
	// test Pods share the node.
	if cpu.Cmp(resource.MustParse("1")) > 0 {
		t.Errorf("the release requests %s CPU; want at most 1 of the node's 2 cores", cpu.String())
	}
	t.Logf("the release requests %s CPU and %s memory", cpu.String(), mem.String())
}
