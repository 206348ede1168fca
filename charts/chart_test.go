package charts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"babelfish.dev/babelfish/internal/testenv"
)

const (
	chartDir = "babelfish"
	// release and namespace the chart is rendered as.
	release   = "babelfish"
	namespace = "babelfish"
	// kubeVersion is what `helm lint/template` assume for the chart's
	// kubeVersion constraint; the same version scripts/bootstrap.sh builds
	// kube-apiserver at (the dry-run test checks they agree).
	kubeVersion = "v1.37.2"
	// fieldManager names the test in server-side apply.
	fieldManager = "babelfish-chart-test"
)

// valuesSet is one of the chart's ci/ values files and what rendering it
// must produce.
type valuesSet struct {
	name string
	file string
	// set are --set flags on top of file.
	set []string
	// privilegedAgent: the GPU agent runs privileged on purpose.
	privilegedAgent bool
	// kinds that must (true) or must not (false) be rendered.
	kinds map[string]bool
	// namespaces the rendered objects live in, besides the release's.
	extraNamespaces []string
	// noDashboard: the scheduler serves no dashboard page.
	noDashboard bool
	// simulatedGPUs: the GPU agent runs on go-nvml's simulated GPUs (no
	// NVIDIA runtime class, no pod-resources hostPath, not root).
	simulatedGPUs bool
	// restricted: every pod meets Pod Security "restricted" (psa_test.go).
	restricted bool
}

// args are the helm flags that select the values set.
func (vs valuesSet) args() []string {
	a := []string{"-f", filepath.Join(chartDir, vs.file)}
	for _, s := range vs.set {
		a = append(a, "--set", s)
	}
	return a
}

func valuesSets() []valuesSet {
	return []valuesSet{
		{
			name: "defaults",
			file: "ci/default-values.yaml",
			kinds: map[string]bool{
				"CustomResourceDefinition": true, "Deployment": true, "DaemonSet": true, "StatefulSet": true,
				"HorizontalPodAutoscaler": true, "Secret": true, "ConfigMap": true, "Lease": false,
				"ServiceMonitor": false, "Queue": false,
			},
		},
		{
			name: "external-minio-tls",
			file: "ci/external-minio-tls-values.yaml",
			kinds: map[string]bool{
				"CustomResourceDefinition": true, "Deployment": true, "DaemonSet": true, "StatefulSet": false,
				"HorizontalPodAutoscaler": true, "Secret": false, "ServiceMonitor": true, "Queue": true,
				"Role": true, "RoleBinding": true,
			},
			extraNamespaces: []string{"research"},
		},
		{
			// Where the runtime class alone does not give NVML the devices.
			name:            "privileged-gpu-agent",
			file:            "ci/default-values.yaml",
			set:             []string{"gpuAgent.privileged=true"},
			kinds:           map[string]bool{"DaemonSet": true},
			privilegedAgent: true,
		},
		{
			name:        "no-dashboard",
			file:        "ci/default-values.yaml",
			set:         []string{"scheduler.dashboard.enabled=false"},
			kinds:       map[string]bool{"Deployment": true},
			noDashboard: true,
		},
		{
			name: "no-gpu-agent",
			file: "ci/no-gpu-agent-values.yaml",
			kinds: map[string]bool{
				"CustomResourceDefinition": true, "Deployment": true, "DaemonSet": false, "StatefulSet": true,
				"HorizontalPodAutoscaler": false, "ConfigMap": false, "ServiceMonitor": false,
			},
			restricted: true,
		},
		{
			// One small node without registry, GPU or StorageClass, in a
			// namespace enforcing Pod Security "restricted".
			name: "local-cluster",
			file: "ci/local-cluster-values.yaml",
			kinds: map[string]bool{
				"CustomResourceDefinition": true, "Deployment": true, "DaemonSet": true, "StatefulSet": true,
				"HorizontalPodAutoscaler": true, "Secret": true, "Pod": true,
			},
			simulatedGPUs: true,
			restricted:    true,
		},
		{
			// The defaults on simulated GPUs.
			name:          "fake-gpus",
			file:          "ci/default-values.yaml",
			set:           []string{"gpuAgent.fakeGPUs=dgxa100"},
			kinds:         map[string]bool{"DaemonSet": true, "Pod": true},
			simulatedGPUs: true,
			restricted:    true,
		},
	}
}

// helm runs the helm binary from the tools cache in the charts directory,
// with its config, cache and data directories in a temp dir so that nothing
// of the user's helm setup leaks in.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin, terr := testenv.Tool("helm")
	if terr != nil {
		t.Fatalf("helm: %v", terr)
	}
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// render runs `helm template` and decodes every object it prints.
func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	base := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "--include-crds"}
	out, stderr, err := helm(t, append(base, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("helm template %v: output: %v", args, err)
	}
	if len(objs) == 0 {
		t.Fatalf("helm template %v rendered no object", args)
	}
	return objs
}

func decodeAll(manifest string) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "{}" || s == "" {
			continue
		}
		// UnmarshalJSON keeps integers as int64, as the typed converters
		// want them.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		objs = append(objs, u)
	}
}

// TestLint runs `helm lint --strict` on every values set: no error, no
// warning.
func TestLint(t *testing.T) {
	for _, vs := range valuesSets() {
		t.Run(vs.name, func(t *testing.T) {
			out, stderr, err := helm(t, append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, vs.args()...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, stderr)
			}
			for _, bad := range []string{"[ERROR]", "[WARNING]"} {
				if strings.Contains(out, bad) {
					t.Errorf("helm lint printed %s:\n%s", bad, out)
				}
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint did not report success:\n%s", out)
			}
		})
	}
}

// TestRejectsBadValues: values that are wrong fail `helm template` (and so
// install) with a message naming the key, and render nothing.
func TestRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // all in the error message
	}{
		{"ci bad values file", []string{"-f", filepath.Join(chartDir, "ci/bad/values.yaml")}, []string{"/scheduler/replicas", "minimum"}},
		{"typo in a key", []string{"--set", "scheduler.replica=2"}, []string{"/scheduler", "replica"}},
		{"unknown fake GPU machine", []string{"--set", "gpuAgent.fakeGPUs=dgxb200"}, []string{"/gpuAgent/fakeGPUs", "dgxa100"}},
		{"external store without endpoint", []string{"--set", "objectStore.mode=external", "--set", "objectStore.external.credentialsSecret.name=s3"}, []string{"/objectStore/external/endpoint", "minLength"}},
		{"external store without credentials", []string{"--set", "objectStore.mode=external", "--set", "objectStore.external.endpoint=s3:9000"}, []string{"/objectStore/external/credentialsSecret/name"}},
		{"unknown object store mode", []string{"--set", "objectStore.mode=s3"}, []string{"/objectStore/mode", "minio"}},
		{"bad duration", []string{"--set", "scheduler.gracePeriod=two minutes"}, []string{"/scheduler/gracePeriod"}},
		{"port out of range", []string{"--set", "gpuAgent.port=70000"}, []string{"/gpuAgent/port", "maximum"}},
		{"queue with both quotas", []string{"--set", "queues[0].name=a", "--set", "queues[0].nominalGPUs=1", "--set", "queues[0].nominalGPUMilli=1000"}, []string{"/queues/0"}},
		{"HPA min above max", []string{"--set", "serving.autoscaling.minReplicas=5", "--set", "serving.autoscaling.maxReplicas=3"}, []string{"serving.autoscaling.minReplicas (5)", "serving.autoscaling.maxReplicas (3)"}},
		{"CA without TLS", []string{"-f", filepath.Join(chartDir, "ci/external-minio-tls-values.yaml"), "--set", "objectStore.external.tls=false"}, []string{"objectStore.external.caSecret.name", "objectStore.external.tls"}},
		{"dashboard on the metrics port", []string{"--set", "scheduler.dashboard.port=8080"}, []string{"scheduler.dashboard.port (8080)", "scheduler.metricsPort"}},
		{"typo under dashboard", []string{"--set", "scheduler.dashboard.porrt=8081"}, []string{"/scheduler/dashboard", "porrt"}},
		{"unknown vocoder", []string{"--set", "serving.vocoder=wavenet"}, []string{"/serving/vocoder", "loops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
			out, stderr, err := helm(t, append(base, tt.args...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded; want it refused", tt.args)
			}
			if strings.TrimSpace(out) != "" {
				t.Errorf("helm template %v printed objects although it failed:\n%.500s", tt.args, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error message lacks %q:\n%s", w, stderr)
				}
			}
			t.Logf("refused: %s", strings.TrimSpace(stderr))
		})
	}
}

// TestRenderedObjects checks what each values set renders: the kinds it
// must and must not have, security contexts, probes and least-privilege
// RBAC.
func TestRenderedObjects(t *testing.T) {
	for _, vs := range valuesSets() {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, vs.args()...)
			have := map[string]int{}
			for _, o := range objs {
				have[o.GetKind()]++
			}
			for kind, want := range vs.kinds {
				if got := have[kind] > 0; got != want {
					t.Errorf("rendered %d %s; want present=%v", have[kind], kind, want)
				}
			}
			if have["CustomResourceDefinition"] != 3 {
				t.Errorf("rendered %d CRDs; want 3 (TrainingJob, Queue, TranslationModel)", have["CustomResourceDefinition"])
			}
			for _, o := range objs {
				checkObject(t, o, vs)
			}
			checkDashboard(t, objs, !vs.noDashboard)
			t.Logf("%d objects: %v", len(objs), have)
		})
	}
}

// checkDashboard: with the dashboard on, the scheduler listens for it on a
// container port the scheduler Service exposes, scrapes the release's own
// GPU agent and serving pods, and has the object store's settings for the
// releases; with it off, none of that.
func checkDashboard(t *testing.T, objs []*unstructured.Unstructured, on bool) {
	t.Helper()
	var dep, svc *unstructured.Unstructured
	for _, o := range objs {
		if o.GetLabels()["app.kubernetes.io/component"] != "scheduler" {
			continue
		}
		switch o.GetKind() {
		case "Deployment":
			dep = o
		case "Service":
			svc = o
		}
	}
	if dep == nil || svc == nil {
		t.Fatal("no scheduler Deployment or Service rendered")
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	var pod corev1.PodSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
		t.Fatal(err)
	}
	c := pod.Containers[0]
	var port int32
	for _, p := range c.Ports {
		if p.Name == "dashboard" {
			port = p.ContainerPort
		}
	}
	var listen string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--dashboard-listen="); ok {
			listen = v
		}
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	svcPort := slices.ContainsFunc(ports, func(p any) bool { return p.(map[string]any)["targetPort"] == "dashboard" })
	s3 := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "BABELFISH_S3_ENDPOINT" })
	if !on {
		if port != 0 || listen != "" || svcPort || s3 {
			t.Errorf("dashboard off, yet port %d, --dashboard-listen %q, Service port %v, object store env %v", port, listen, svcPort, s3)
		}
		return
	}
	if port == 0 || listen != fmt.Sprintf(":%d", port) || !svcPort || !s3 {
		t.Errorf("dashboard on: container port %d, --dashboard-listen %q, Service port %v, object store env %v", port, listen, svcPort, s3)
	}
	// Each selector picks exactly its component's pods among the chart's.
	for flag, component := range map[string]string{"--dashboard-agent-selector": "gpu-agent", "--dashboard-serving-selector": "serving"} {
		var sel string
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				sel = v
			}
		}
		selector, err := labels.Parse(sel)
		if err != nil || sel == "" {
			t.Errorf("%s %q: %v", flag, sel, err)
			continue
		}
		for _, o := range objs {
			tmpl, found, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
			if !found {
				continue
			}
			want := o.GetLabels()["app.kubernetes.io/component"] == component
			if got := selector.Matches(labels.Set(tmpl)); got != want {
				t.Errorf("%s %q matches the pods of %s/%s: %v; want %v", flag, sel, o.GetKind(), o.GetName(), got, want)
			}
		}
	}
	if !slices.Contains(c.Args, "--dashboard-agent-namespace="+namespace) {
		t.Errorf("scheduler args lack --dashboard-agent-namespace=%s: %v", namespace, c.Args)
	}
}

// checkObject applies the chart's rules to one rendered object.
func checkObject(t *testing.T, o *unstructured.Unstructured, vs valuesSet) {
	t.Helper()
	id := o.GetKind() + "/" + o.GetName()
	switch o.GetKind() {
	case "Deployment", "DaemonSet", "StatefulSet":
		spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		var pod corev1.PodSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
			t.Fatalf("%s: pod spec: %v", id, err)
		}
		component := o.GetLabels()["app.kubernetes.io/component"]
		checkPod(t, id, component, &pod, o, vs)
		if o.GetKind() == "Deployment" && component == "scheduler" {
			if r, _, _ := unstructured.NestedInt64(o.Object, "spec", "replicas"); r != 2 {
				t.Errorf("%s: %d replicas; want 2 (leader and standby)", id, r)
			}
			if args := pod.Containers[0].Args; !slices.Contains(args, "--leader-elect=true") {
				t.Errorf("%s: args %v lack --leader-elect=true", id, args)
			}
		}
	case "ClusterRole", "Role":
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			for _, key := range []string{"apiGroups", "resources", "verbs"} {
				vals, _, _ := unstructured.NestedStringSlice(rm, key)
				if slices.Contains(vals, "*") {
					t.Errorf("%s: rule %v grants * in %s", id, rm, key)
				}
			}
			res, _, _ := unstructured.NestedStringSlice(rm, "resources")
			verbs, _, _ := unstructured.NestedStringSlice(rm, "verbs")
			if slices.Contains(res, "secrets") {
				t.Errorf("%s: rule %v touches secrets; no component needs to", id, rm)
			}
			if slices.Contains(res, "nodes") && slices.ContainsFunc(verbs, func(v string) bool { return v == "delete" || v == "update" || v == "create" }) {
				t.Errorf("%s: rule %v may create, update or delete nodes", id, rm)
			}
		}
	}
}

func checkPod(t *testing.T, id, component string, pod *corev1.PodSpec, o *unstructured.Unstructured, vs valuesSet) {
	t.Helper()
	privilegedAgent := vs.privilegedAgent
	// The agent runs as root only to read the kubelet's pod-resources socket.
	rootAgent := component == "gpu-agent" && !vs.simulatedGPUs
	ann, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "annotations")
	if len(pod.Containers) == 0 {
		t.Fatalf("%s: no container", id)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s: no securityContext", id, c.Name)
			continue
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: root filesystem is writable", id, c.Name)
		}
		privileged := sc.Privileged != nil && *sc.Privileged
		if component == "gpu-agent" && privileged && !privilegedAgent {
			t.Errorf("%s/%s: privileged although gpuAgent.privileged is false", id, c.Name)
		}
		if !rootAgent {
			nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
				(pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot)
			if !nonRoot {
				t.Errorf("%s/%s: may run as root", id, c.Name)
			}
		}
		if component == "gpu-agent" && privilegedAgent {
			if !privileged {
				t.Errorf("%s/%s: not privileged although gpuAgent.privileged is true", id, c.Name)
			}
		} else {
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: privilege escalation allowed", id, c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s/%s: capabilities not all dropped", id, c.Name)
			}
		}
		if c.Resources.Requests == nil {
			t.Errorf("%s/%s: no resource requests", id, c.Name)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s/%s: lacks a readiness or liveness probe", id, c.Name)
		}
		if port := ann["prometheus.io/port"]; ann["prometheus.io/scrape"] == "true" {
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return fmt.Sprint(p.ContainerPort) == port }) {
				t.Errorf("%s/%s: prometheus.io/port %q is no container port", id, c.Name, port)
			}
		}
	}
	if component == "gpu-agent" {
		var hostPath string
		for _, v := range pod.Volumes {
			if v.HostPath != nil {
				hostPath = v.HostPath.Path
			}
		}
		socket := slices.ContainsFunc(pod.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--pod-resources-socket") })
		if vs.simulatedGPUs {
			if hostPath != "" || socket {
				t.Errorf("%s: simulated GPUs, yet hostPath %q, --pod-resources-socket %v", id, hostPath, socket)
			}
			if pod.RuntimeClassName != nil {
				t.Errorf("%s: simulated GPUs, yet runtimeClassName %q", id, *pod.RuntimeClassName)
			}
		} else {
			if hostPath != "/var/lib/kubelet/pod-resources" || !socket {
				t.Errorf("%s: pod-resources hostPath = %q, --pod-resources-socket %v", id, hostPath, socket)
			}
			if pod.RuntimeClassName == nil || *pod.RuntimeClassName != "nvidia" {
				t.Errorf("%s: runtimeClassName = %v; want nvidia", id, pod.RuntimeClassName)
			}
		}
		if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == "nvidia.com/gpu" }) {
			t.Errorf("%s: no toleration of nvidia.com/gpu taints", id)
		}
	}
}

// serviceMonitorCRD is the Prometheus Operator's ServiceMonitor CRD cut to
// what the API server needs to accept the chart's ServiceMonitors: the real
// group, version, names and scope, and the endpoint fields the chart sets,
// typed as upstream types them.
const serviceMonitorCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor, shortNames: [smon]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [selector]
            properties:
              selector:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              namespaceSelector:
                type: object
                properties:
                  any: {type: boolean}
                  matchNames: {type: array, items: {type: string}}
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {type: string}
                    path: {type: string}
                    interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                    scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                    honorLabels: {type: boolean}
                  x-kubernetes-preserve-unknown-fields: true
`

// TestServerSideDryRun renders every values set and sends each object to a
// real kube-apiserver: the CRDs (the chart's and ServiceMonitor) are applied
// for real and awaited, namespaces created, then every other object is
// applied with server-side dry run, which runs defaulting, validation
// (OpenAPI and CEL of the CRDs included) and admission without storing.
func TestServerSideDryRun(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	cs := cp.Clientset()
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != kubeVersion {
		t.Fatalf("kube-apiserver is %s; the chart is linted for %s: update kubeVersion here", v.GitVersion, kubeVersion)
	}
	// Warnings of the API server, Pod Security's among them.
	warns := &warningRecorder{}
	cfg := cp.Config()
	cfg.WarningHandler = warns
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	a := &applier{t: t, dyn: dyn, mapper: mapper}

	smon, err := decodeAll(serviceMonitorCRD)
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range valuesSets() {
		t.Run(vs.name, func(t *testing.T) {
			a.t = t
			ctx := t.Context()
			objs := render(t, vs.args()...)
			var crds, rest []*unstructured.Unstructured
			for _, o := range objs {
				if o.GetKind() == "CustomResourceDefinition" {
					crds = append(crds, o)
				} else {
					rest = append(rest, o)
				}
			}
			if slices.ContainsFunc(rest, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceMonitor" }) {
				crds = append(crds, smon...)
			}
			for _, crd := range crds {
				a.apply(ctx, crd, false)
			}
			a.waitEstablished(ctx, crds)
			mapper.Reset()

			// Values sets meant for Pod Security "restricted" are applied
			// into namespaces that enforce it: Pods (the test hooks) that
			// violate it are refused, workloads draw a warning.
			var nsLabels map[string]string
			if vs.restricted {
				nsLabels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}
			}
			for _, ns := range append([]string{namespace}, vs.extraNamespaces...) {
				a.ensureNamespace(ctx, ns, nsLabels)
			}
			warns.reset()
			accepted := map[string]int{}
			for _, o := range rest {
				if a.apply(ctx, o, true) {
					accepted[o.GetKind()]++
				}
			}
			for _, w := range warns.reset() {
				if vs.restricted && strings.Contains(w, "PodSecurity") {
					t.Errorf("Pod Security restricted: %s", w)
				}
			}
			t.Logf("accepted with server-side dry run: %d objects %v (plus %d CRDs applied)", len(rest), accepted, len(crds))
			// Dry run stored nothing.
			deps, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(deps.Items) != 0 {
				t.Errorf("dry run stored %d Deployments", len(deps.Items))
			}
		})
	}

	// Pod Security has teeth here: in a namespace enforcing "restricted",
	// the real-GPU agent (root, hostPath) draws a warning and a test Pod
	// made to run as root is refused.
	t.Run("enforces Pod Security restricted", func(t *testing.T) {
		a.t = t
		ctx := t.Context()
		a.ensureNamespace(ctx, namespace, map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"})
		defer a.ensureNamespace(ctx, namespace, nil)
		warns.reset()
		var agent, pod *unstructured.Unstructured
		for _, o := range render(t, "-f", filepath.Join(chartDir, "ci/default-values.yaml")) {
			switch {
			case o.GetKind() == "DaemonSet":
				agent = o
			case o.GetKind() == "Pod" && pod == nil:
				pod = o
			}
		}
		if agent == nil || pod == nil {
			t.Fatal("no DaemonSet or test Pod rendered")
		}
		a.apply(ctx, agent, true)
		if w := warns.reset(); !slices.ContainsFunc(w, func(s string) bool {
			return strings.Contains(s, "PodSecurity") && strings.Contains(s, "hostPath")
		}) {
			t.Errorf("the real-GPU agent in a restricted namespace: warnings %q; want Pod Security's naming hostPath", w)
		}
		if err := unstructured.SetNestedField(pod.Object, int64(0), "spec", "securityContext", "runAsUser"); err != nil {
			t.Fatal(err)
		}
		err := a.tryApply(ctx, pod, true)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "runAsUser=0") {
			t.Fatalf("test Pod as root in a restricted namespace: err = %v; want Forbidden by Pod Security", err)
		}
		t.Logf("refused as expected: %v", err)
	})

	// The check has teeth: an object the API server must refuse is refused.
	t.Run("refuses invalid objects", func(t *testing.T) {
		a.t = t
		objs := render(t, "-f", filepath.Join(chartDir, "ci/default-values.yaml"))
		for _, o := range objs {
			if o.GetKind() != "DaemonSet" {
				continue
			}
			// privileged with allowPrivilegeEscalation false is invalid.
			ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := ctrs[0].(map[string]any)
			if err := unstructured.SetNestedField(c, true, "securityContext", "privileged"); err != nil {
				t.Fatal(err)
			}
			ctrs[0] = c
			if err := unstructured.SetNestedSlice(o.Object, ctrs, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
			err := a.tryApply(t.Context(), o, true)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("privileged container without privilege escalation: err = %v; want Invalid", err)
			}
			t.Logf("refused as expected: %v", err)
			return
		}
		t.Fatal("no DaemonSet rendered")
	})
}

type applier struct {
	t      *testing.T
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
}

// apply server-side applies o (dry run when asked) and fails the test,
// naming the object, when the API server refuses it.
func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) bool {
	a.t.Helper()
	if err := a.tryApply(ctx, o, dryRun); err != nil {
		a.t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		return false
	}
	return true
}

func (a *applier) tryApply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("no resource for %v: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			return fmt.Errorf("namespaced %s rendered without a namespace", gvk.Kind)
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	} else if o.GetNamespace() != "" {
		return fmt.Errorf("cluster-scoped %s rendered with namespace %q", gvk.Kind, o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Apply(ctx, o.GetName(), o, opts)
	return err
}

// ensureNamespace applies a namespace with exactly these labels (of the
// test's field manager).
func (a *applier) ensureNamespace(ctx context.Context, name string, labels map[string]string) {
	a.t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	ns.SetLabels(labels)
	a.apply(ctx, ns, false)
}

// warningRecorder keeps the API server's warnings.
type warningRecorder struct {
	mu   sync.Mutex
	list []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// reset returns the warnings so far and forgets them.
func (w *warningRecorder) reset() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// waitEstablished waits until every CRD is Established and its resource is
// discoverable.
func (a *applier) waitEstablished(ctx context.Context, crds []*unstructured.Unstructured) {
	a.t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, crd := range crds {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := a.dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			var states []string
			for _, c := range conds {
				cm := c.(map[string]any)
				states = append(states, fmt.Sprint(cm["type"], "=", cm["status"]))
				if cm["type"] == "Established" && cm["status"] == "True" {
					return true, nil
				}
			}
			sort.Strings(states)
			last = strings.Join(states, ",")
			return false, nil
		})
		if err != nil {
			a.t.Fatalf("CRD %s not established: %v (conditions %s)", crd.GetName(), err, last)
		}
	}
}

// TestServingVocoder: serving.vocoder reaches `babelfish serve` as
// --vocoder, and an empty value leaves each release's own vocoder.
func TestServingVocoder(t *testing.T) {
	args := func(set ...string) []string {
		var flags []string
		for _, s := range set {
			flags = append(flags, "--set", s)
		}
		for _, o := range render(t, flags...) {
			if o.GetKind() != "Deployment" || o.GetLabels()["app.kubernetes.io/component"] != "serving" {
				continue
			}
			ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range ctrs {
				a, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
				return a
			}
		}
		t.Fatal("no serving Deployment rendered")
		return nil
	}
	if a := args(); slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--vocoder") }) {
		t.Errorf("default values: serve args %v name a vocoder", a)
	}
	if a := args("serving.vocoder=loops"); !slices.Contains(a, "--vocoder=loops") {
		t.Errorf("serving.vocoder=loops: serve args %v lack --vocoder=loops", a)
	}
}
