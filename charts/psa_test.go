package charts

import (
	"cmp"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// renderedPod is one pod the chart would run: a workload's pod template or
// a Pod (the `helm test` hooks).
type renderedPod struct {
	id        string // Kind/name of the object
	component string
	meta      metav1.ObjectMeta
	spec      corev1.PodSpec
}

// podsOf decodes the pods of every rendered object that runs any.
func podsOf(t *testing.T, objs []*unstructured.Unstructured) []renderedPod {
	t.Helper()
	var pods []renderedPod
	for _, o := range objs {
		var path []string
		switch o.GetKind() {
		case "Pod":
			path = nil
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			path = []string{"spec", "template"}
		case "CronJob":
			path = []string{"spec", "jobTemplate", "spec", "template"}
		default:
			continue
		}
		id := o.GetKind() + "/" + o.GetName()
		tmpl := o.Object
		if path != nil {
			var found bool
			var err error
			tmpl, found, err = unstructured.NestedMap(o.Object, path...)
			if err != nil || !found {
				t.Fatalf("%s: no pod template at %v: %v", id, path, err)
			}
		}
		var pod corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
			t.Fatalf("%s: pod: %v", id, err)
		}
		pods = append(pods, renderedPod{id: id, component: o.GetLabels()["app.kubernetes.io/component"], meta: pod.ObjectMeta, spec: pod.Spec})
	}
	return pods
}

// psaEvaluator is the Pod Security admission's own policy code.
func psaEvaluator(t *testing.T) policy.Evaluator {
	t.Helper()
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// violations are the checks of level (latest version) that pod fails, as
// "reason (detail)", sorted.
func violations(e policy.Evaluator, level psaapi.Level, pod renderedPod) []string {
	var out []string
	for _, r := range e.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}, &pod.meta, &pod.spec) {
		if r.Allowed {
			continue
		}
		v := r.ForbiddenReason
		if r.ForbiddenDetail != "" {
			v += " (" + r.ForbiddenDetail + ")"
		}
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// reasons are the failed checks' reasons alone, sorted.
func reasons(e policy.Evaluator, level psaapi.Level, pod renderedPod) []string {
	var out []string
	for _, r := range e.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}, &pod.meta, &pod.spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason)
		}
	}
	sort.Strings(out)
	return out
}

// TestPodSecurityRestricted renders the values sets meant for a namespace
// that enforces Pod Security "restricted" and evaluates every pod (the
// workloads' templates and the `helm test` Pods) with the Pod Security
// admission's policy checks, at level restricted, latest version.
func TestPodSecurityRestricted(t *testing.T) {
	e := psaEvaluator(t)
	sets := slices.DeleteFunc(valuesSets(), func(vs valuesSet) bool { return !vs.restricted })
	// Real GPUs without the pod-resources socket meet restricted too.
	sets = append(sets, valuesSet{name: "real-gpus-no-pod-resources", file: "ci/default-values.yaml", set: []string{"gpuAgent.podResources.enabled=false"}})
	for _, vs := range sets {
		t.Run(vs.name, func(t *testing.T) {
			pods := podsOf(t, render(t, vs.args()...))
			components := map[string]bool{}
			for _, p := range pods {
				components[p.component] = true
				if v := violations(e, psaapi.LevelRestricted, p); len(v) > 0 {
					t.Errorf("%s (component %s) violates Pod Security restricted: %s", p.id, p.component, strings.Join(v, "; "))
				}
			}
			t.Logf("%d pods restricted-compliant; components %v", len(pods), slices.Sorted(maps.Keys(components)))
			if len(pods) < 3 {
				t.Errorf("only %d pods rendered", len(pods))
			}
		})
	}
}

// TestPodSecurityRealGPUAgent: with the defaults (real GPUs, pod-resources
// on), every pod but the GPU agent's meets "restricted", and the agent
// misses it only for its root user and the kubelet's hostPath, which
// "baseline" forbids too (the hostPath alone): values.yaml tells to install
// into a "privileged" namespace then, and that stays true.
func TestPodSecurityRealGPUAgent(t *testing.T) {
	e := psaEvaluator(t)
	pods := podsOf(t, render(t, "-f", chartDir+"/ci/default-values.yaml"))
	var agent *renderedPod
	for i, p := range pods {
		if p.component == "gpu-agent" {
			agent = &pods[i]
			continue
		}
		if v := violations(e, psaapi.LevelRestricted, p); len(v) > 0 {
			t.Errorf("%s violates Pod Security restricted: %s", p.id, strings.Join(v, "; "))
		}
	}
	if agent == nil {
		t.Fatal("no GPU agent rendered")
	}
	for _, tc := range []struct {
		level psaapi.Level
		want  []string
	}{
		{psaapi.LevelRestricted, []string{"restricted volume types", "runAsNonRoot != true", "runAsUser=0"}},
		{psaapi.LevelBaseline, []string{"hostPath volumes"}},
		{psaapi.LevelPrivileged, nil},
	} {
		got := reasons(e, tc.level, *agent)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s at level %s fails %q (%s); want exactly %q", agent.id, tc.level, got, strings.Join(violations(e, tc.level, *agent), "; "), tc.want)
		}
		t.Logf("%s at level %s: %s", agent.id, tc.level, cmp.Or(strings.Join(violations(e, tc.level, *agent), "; "), "allowed"))
	}
}

// TestPodSecurityCatchesViolations: the evaluation has teeth: each way a pod
// can break "restricted" is reported, naming the object.
func TestPodSecurityCatchesViolations(t *testing.T) {
	e := psaEvaluator(t)
	pods := podsOf(t, render(t, "-f", chartDir+"/ci/local-cluster-values.yaml"))
	var base renderedPod
	for _, p := range pods {
		if p.component == "scheduler" {
			base = p
		}
	}
	if base.id == "" {
		t.Fatal("no scheduler rendered")
	}
	if v := violations(e, psaapi.LevelRestricted, base); len(v) > 0 {
		t.Fatalf("%s: %v", base.id, v)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.PodSpec)
		want   string
	}{
		{"root", func(s *corev1.PodSpec) { s.SecurityContext.RunAsUser = new(int64(0)) }, "runAsUser=0"},
		{"escalation", func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation != false"},
		{"capabilities", func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil }, "unrestricted capabilities"},
		{"seccomp", func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil }, "seccompProfile"},
		{"hostNetwork", func(s *corev1.PodSpec) { s.HostNetwork = true }, "host namespaces"},
		{"hostPath", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, "restricted volume types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			p.spec = *base.spec.DeepCopy()
			tc.mutate(&p.spec)
			got := violations(e, psaapi.LevelRestricted, p)
			if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, tc.want) }) {
				t.Errorf("%s with %s: violations %q; want %q", p.id, tc.name, got, tc.want)
			}
		})
	}
}
