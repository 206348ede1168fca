package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The version scripts/bootstrap.sh builds kube-apiserver at.
const wantKubeVersion = "v1.37.2"

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.babelfish.dev
spec:
  group: testenv.babelfish.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

func gadgetCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gadgets.testenv.babelfish.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "testenv.babelfish.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: "Gadget", ListKind: "GadgetList", Plural: "gadgets", Singular: "gadget",
			},
			Scope: apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{
					OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object"},
				},
			}},
		},
	}
}

// TestControlPlaneSmoke runs the real kube-apiserver and etcd, registers GPU
// nodes through it and reads them back.
func TestControlPlaneSmoke(t *testing.T) {
	crdDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(crdDir, "widgets.yaml"), []byte(widgetCRD), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := ControlPlaneForTest(t, WithCRDDirs(crdDir), WithCRDs(gadgetCRD()))
	t.Logf("control plane at %s ready in %v", cp.Host(), cp.StartupDuration().Round(time.Millisecond))
	cs := cp.Clientset()
	ctx := t.Context()

	t.Run("version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != wantKubeVersion {
			t.Errorf("server version = %q, want %q", v.GitVersion, wantKubeVersion)
		}
	})

	t.Run("crds", func(t *testing.T) {
		if got := len(cp.CRDs()); got != 2 {
			t.Errorf("installed %d CRDs, want 2", got)
		}
		rl, err := cs.Discovery().ServerResourcesForGroupVersion("testenv.babelfish.dev/v1")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rl.APIResources {
			names = append(names, r.Name)
		}
		sort.Strings(names)
		if got, want := strings.Join(names, ","), "gadgets,widgets"; got != want {
			t.Errorf("served resources = %s, want %s", got, want)
		}
	})

	nodes := []struct {
		name   string
		gpus   int
		labels map[string]string
		opts   []NodeOption
		cpu    string
		mem    string
		ready  corev1.ConditionStatus
	}{
		{name: "gpu-a", gpus: 8, labels: map[string]string{"pool": "a100"}, cpu: "96", mem: "960Gi", ready: corev1.ConditionTrue},
		{name: "gpu-b", gpus: 8, labels: map[string]string{"pool": "a100"}, cpu: "96", mem: "960Gi", ready: corev1.ConditionTrue},
		{name: "gpu-c", gpus: 4, labels: map[string]string{"pool": "l4"},
			opts: []NodeOption{WithNodeCPU(resource.MustParse("32")), WithNodeMemory(resource.MustParse("128Gi")), WithNodeNotReady()},
			cpu:  "32", mem: "128Gi", ready: corev1.ConditionFalse},
	}
	for _, n := range nodes {
		if _, err := RegisterGPUNode(ctx, cs, n.name, n.gpus, n.labels, n.opts...); err != nil {
			t.Fatalf("register %s: %v", n.name, err)
		}
	}

	checkNode := func(t *testing.T, got *corev1.Node, gpus int, cpu, mem string, ready corev1.ConditionStatus, pool string) {
		t.Helper()
		for field, list := range map[string]corev1.ResourceList{"capacity": got.Status.Capacity, "allocatable": got.Status.Allocatable} {
			for res, want := range map[corev1.ResourceName]string{GPUResource: resource.NewQuantity(int64(gpus), resource.DecimalSI).String(), corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem} {
				q, ok := list[res]
				if !ok {
					t.Errorf("%s: %s has no %s", got.Name, field, res)
					continue
				}
				if w := resource.MustParse(want); q.Cmp(w) != 0 {
					t.Errorf("%s: %s[%s] = %s, want %s", got.Name, field, res, q.String(), want)
				}
			}
		}
		var status corev1.ConditionStatus
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.NodeReady {
				status = c.Status
			}
		}
		if status != ready {
			t.Errorf("%s: Ready = %q, want %q", got.Name, status, ready)
		}
		if got.Labels["pool"] != pool || got.Labels[corev1.LabelHostname] != got.Name {
			t.Errorf("%s: labels = %v, want pool=%s and hostname=%s", got.Name, got.Labels, pool, got.Name)
		}
	}

	t.Run("get", func(t *testing.T) {
		for _, n := range nodes {
			t.Run(n.name, func(t *testing.T) {
				got, err := cs.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				checkNode(t, got, n.gpus, n.cpu, n.mem, n.ready, n.labels["pool"])
			})
		}
	})

	t.Run("list", func(t *testing.T) {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != len(nodes) {
			t.Fatalf("listed %d nodes, want %d", len(list.Items), len(nodes))
		}
		var total int64
		for i := range list.Items {
			q := list.Items[i].Status.Allocatable[GPUResource]
			total += q.Value()
		}
		if total != 20 {
			t.Errorf("allocatable GPUs over all nodes = %d, want 20", total)
		}
		a100, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "pool=a100"})
		if err != nil {
			t.Fatal(err)
		}
		if len(a100.Items) != 2 {
			t.Errorf("pool=a100 selects %d nodes, want 2", len(a100.Items))
		}
	})

	t.Run("bad node input changes nothing", func(t *testing.T) {
		tests := []struct {
			name, node string
			gpus       int
			want       string
		}{
			{"negative gpus", "gpu-x", -1, "gpus is -1: it must be >= 0"},
			{"empty name", " ", 8, "node name is empty"},
			{"duplicate", "gpu-a", 8, "create node gpu-a"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := RegisterGPUNode(ctx, cs, tt.node, tt.gpus, nil)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.want)
				}
			})
		}
		if _, err := RegisterGPUNode(ctx, cs, "gpu-a", 8, nil); !apierrors.IsAlreadyExists(err) {
			t.Errorf("duplicate node error = %v, want AlreadyExists", err)
		}
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != len(nodes) {
			t.Errorf("after bad input %d nodes, want %d", len(list.Items), len(nodes))
		}
		got, err := cs.CoreV1().Nodes().Get(ctx, "gpu-a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNode(t, got, 8, "96", "960Gi", corev1.ConditionTrue, "a100")
	})

	t.Run("kubeconfig", func(t *testing.T) {
		path, err := cp.Kubeconfig()
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := cp.Kubeconfig(); again != path {
			t.Errorf("second Kubeconfig() = %s, want %s", again, path)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := kc.Discovery().ServerVersion(); err != nil || v.GitVersion != wantKubeVersion {
			t.Errorf("version through kubeconfig = %v, %v; want %s", v, err, wantKubeVersion)
		}

		kubectl, err := Tool("kubectl")
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, kubectl, "--kubeconfig", path, "get", "nodes", "-l", "pool=a100", "-o", "name").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get nodes: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "node/gpu-a\nnode/gpu-b"; got != want {
			t.Errorf("kubectl get nodes = %q, want %q", got, want)
		}
	})

	t.Run("stop", func(t *testing.T) {
		path, err := cp.Kubeconfig()
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if err := cp.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("stopped in %v", time.Since(began).Round(time.Millisecond))
		if err := cp.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if _, err := cs.Discovery().ServerVersion(); err == nil {
			t.Error("API server still answers after Stop")
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("kubeconfig %s still there after Stop (stat: %v)", path, err)
		}
	})
}

// TestControlPlaneBadSetup checks that StartControlPlane refuses, before
// starting anything, when binaries or CRD directories are missing.
func TestControlPlaneBadSetup(t *testing.T) {
	// Stand-ins that only exist to pass the presence check; none of these
	// cases gets as far as running them.
	withBins := func(t *testing.T, names ...string) string {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, "bin", n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	tests := []struct {
		name  string
		bins  []string
		opts  []ControlPlaneOption
		wants []string
	}{
		{"no binaries", nil, nil, []string{"kube-apiserver not found", "make tools"}},
		{"no etcd", []string{"kube-apiserver"}, nil, []string{"etcd not found", "make tools"}},
		{"missing CRD dir", []string{"kube-apiserver", "etcd"}, []ControlPlaneOption{WithCRDDirs("no-such-crds")}, []string{"CRD directory", "no-such-crds"}},
		{"nil CRD", []string{"kube-apiserver", "etcd"}, []ControlPlaneOption{WithCRDs(nil)}, []string{"CRD 0 of 1 is nil"}},
		{"zero start timeout", []string{"kube-apiserver", "etcd"}, []ControlPlaneOption{WithStartTimeout(0)}, []string{"start timeout is 0s: it must be > 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(ToolsEnv, withBins(t, tt.bins...))
			cp, err := StartControlPlane(t.Context(), tt.opts...)
			if err == nil {
				_ = cp.Stop()
				t.Fatal("StartControlPlane succeeded, want an error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
