package controller

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/scheduler/core"
)

func testJob() *v1alpha1.TrainingJob {
	cpu, mem := resource.MustParse("1500m"), resource.MustParse("3Gi")
	return &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Name: "s2st", Namespace: "research", UID: "uid-1"},
		Spec: v1alpha1.TrainingJobSpec{
			Dataset:       v1alpha1.DatasetRef{Name: "cldr", Version: "v3"},
			Model:         v1alpha1.ModelConfig{Languages: []string{"en", "de"}, Steps: 10},
			Workers:       4,
			GPUsPerWorker: 2,
			GPUModels:     []string{"A100"},
			Template: v1alpha1.WorkerTemplate{
				Image: "babelfish:1", Resources: v1alpha1.WorkerResources{CPU: &cpu, Memory: &mem},
				Env: []corev1.EnvVar{{Name: EnvRank, Value: "7"}, {Name: "KEEP", Value: "1"}},
			},
		},
	}
}

func TestRequestAndCoreJob(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*v1alpha1.TrainingJob)
		want core.Request
	}{
		{"whole GPUs", func(*v1alpha1.TrainingJob) {}, core.Request{CPUMilli: 1500, MemoryMiB: 3072, GPUs: 2, GPUMilli: 1000, Models: []string{"A100"}}},
		{"shared GPU", func(j *v1alpha1.TrainingJob) { j.Spec.GPUsPerWorker = 1; m := int32(250); j.Spec.GPUMilli = &m },
			core.Request{CPUMilli: 1500, MemoryMiB: 3072, GPUs: 1, GPUMilli: 250, Models: []string{"A100"}}},
		{"CPU only", func(j *v1alpha1.TrainingJob) { j.Spec.GPUsPerWorker = 0; j.Spec.GPUModels = nil }, core.Request{CPUMilli: 1500, MemoryMiB: 3072}},
		{"memory rounds up to MiB", func(j *v1alpha1.TrainingJob) {
			m := resource.MustParse("1500Ki")
			j.Spec.Template.Resources.Memory = &m
		}, core.Request{CPUMilli: 1500, MemoryMiB: 2, GPUs: 2, GPUMilli: 1000, Models: []string{"A100"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := testJob()
			tc.edit(j)
			if got := Request(j); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("request %+v, want %+v", got, tc.want)
			}
			cj := coreJob(j)
			if cj.Name != "research/s2st" || cj.Workers != 4 || cj.Validate() != nil {
				t.Errorf("core job %+v (validate: %v)", cj, cj.Validate())
			}
		})
	}
}

func TestWorkerPod(t *testing.T) {
	j := testJob()
	j.Status.LatestCheckpoint = &v1alpha1.CheckpointRef{Step: 40, Path: "checkpoints/s2st/40/"}
	pl := v1alpha1.WorkerPlacement{Rank: 2, Node: "gpu-7", GPUs: []int32{4, 5}, GPUMilli: 1000}
	pod, err := WorkerPod(j, 3, pl, "babelfish", 120)
	if err != nil {
		t.Fatal(err)
	}
	env := podEnv(pod)
	for k, want := range map[string]string{
		EnvRank: "2", EnvWorldSize: "4", EnvGeneration: "3", EnvJob: "s2st", EnvJobID: "research/s2st",
		EnvRendezvous: "s2st-0.s2st.research.svc:29500", EnvListen: ":29500", EnvRingListen: ":29501",
		EnvVisibleDevices: "4,5", EnvGPUIndices: "4,5", EnvGPUMilli: "1000",
		EnvDataset: "cldr", EnvDatasetVersion: "v3", EnvCheckpointInterval: "10m0s",
		EnvResumeFrom: "checkpoints/s2st/40/", "KEEP": "1",
	} {
		if env[k] != want {
			t.Errorf("env %s=%q, want %q", k, env[k], want)
		}
	}
	var ranks int
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Name == EnvRank {
			ranks++
		}
	}
	if ranks != 1 {
		t.Errorf("%s set %d times: the scheduler's must replace the template's", EnvRank, ranks)
	}
	var model v1alpha1.ModelConfig
	if err := json.Unmarshal([]byte(env[EnvModelConfig]), &model); err != nil || model.Steps != 10 {
		t.Errorf("model config env %q: %v", env[EnvModelConfig], err)
	}
	c := pod.Spec.Containers[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", pod.Name, "s2st-3-2"},
		{"hostname", pod.Spec.Hostname, "s2st-2"},
		{"subdomain", pod.Spec.Subdomain, "s2st"},
		{"scheduler", pod.Spec.SchedulerName, "babelfish"},
		{"node name (unbound)", pod.Spec.NodeName, ""},
		{"restart policy", pod.Spec.RestartPolicy, corev1.RestartPolicyNever},
		{"grace", *pod.Spec.TerminationGracePeriodSeconds, int64(120)},
		{"gpu limit", c.Resources.Limits.Name(GPUResource, resource.DecimalSI).Value(), int64(2)},
		{"cpu request", c.Resources.Requests.Cpu().MilliValue(), int64(1500)},
		{"owner", pod.OwnerReferences[0].UID, j.UID},
		{"annotation gpus", pod.Annotations[AnnotationGPUs], "4,5"},
		{"annotation node", pod.Annotations[AnnotationNode], "gpu-7"},
		{"label rank", pod.Labels[LabelRank], "2"},
	}
	for _, ck := range checks {
		if fmt.Sprint(ck.got) != fmt.Sprint(ck.want) {
			t.Errorf("%s: %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	got, err := podPlacement(pod)
	if err != nil || fmt.Sprint(got.GPUs) != "[4 5]" || got.Node != "gpu-7" || got.Rank != 2 || got.GPUMilli != 1000 {
		t.Errorf("placement read back %+v, %v", got, err)
	}

	// A share of one GPU is not requested from the device plugin.
	shared, err := WorkerPod(j, 1, v1alpha1.WorkerPlacement{Rank: 0, Node: "n", GPUs: []int32{1}, GPUMilli: 300}, "babelfish", 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := shared.Spec.Containers[0].Resources.Limits[GPUResource]; ok {
		t.Error("shared-GPU worker requests nvidia.com/gpu")
	}
	cpuOnly, err := WorkerPod(j, 1, v1alpha1.WorkerPlacement{Rank: 0, Node: "n"}, "babelfish", 30)
	if err != nil {
		t.Fatal(err)
	}
	if v := podEnv(cpuOnly)[EnvVisibleDevices]; v != "void" {
		t.Errorf("CPU-only worker %s=%q, want void", EnvVisibleDevices, v)
	}
}

func TestParseGPUs(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"", "[]", false},
		{"0", "[0]", false},
		{"0,3, 7", "[0 3 7]", false},
		{"63", "[63]", false},
		{"64", "", true},
		{"-1", "", true},
		{"a", "", true},
		{"1,,2", "", true},
	} {
		got, err := parseGPUs(tc.in)
		if (err != nil) != tc.err || (!tc.err && fmt.Sprint(got) != tc.want) {
			t.Errorf("parseGPUs(%q) = %v, %v; want %s (error %v)", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), AnnotationGPUs) {
			t.Errorf("parseGPUs(%q) error %q does not name the annotation", tc.in, err)
		}
	}
}

func TestNodeInfos(t *testing.T) {
	inv := &inventory.Inventory{Version: inventory.Version, Node: "n1", GPUs: []inventory.GPU{
		{Index: 0, UUID: "a", Model: "H100", MemoryMiB: 80000, Healthy: true},
		{Index: 1, UUID: "b", Model: "H100", MemoryMiB: 80000, Healthy: false, Reason: "xid 79", Island: 1},
	}}
	raw, err := inventory.Encode(inv)
	if err != nil {
		t.Fatal(err)
	}
	node := func(name string, ann map[string]string, ready corev1.ConditionStatus, cordon bool) corev1.Node {
		return corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
			Spec:       corev1.NodeSpec{Unschedulable: cordon},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"), GPUResource: resource.MustParse("8")},
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
			},
		}
	}
	nodes := []corev1.Node{
		node("n1", map[string]string{inventory.Annotation: string(raw)}, corev1.ConditionTrue, false),
		node("n2", nil, corev1.ConditionTrue, false),                                             // no agent
		node("n3", map[string]string{inventory.Annotation: "{bad"}, corev1.ConditionTrue, false), // garbage
		node("n4", nil, corev1.ConditionFalse, false),
		node("n5", nil, corev1.ConditionTrue, true),
	}
	other := corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("4Gi")}}}}}}
	infos := nodeInfos(nodes, []corev1.Pod{other}, slog.New(slog.DiscardHandler))
	n1 := infos[0]
	if n1.CPUMilli != 12000 || n1.MemoryMiB != 60<<10 || n1.GPUModel != "H100" || len(n1.GPUs) != 2 || n1.GPUs[1].Healthy || n1.GPUs[1].Island != 1 || n1.Unschedulable {
		t.Errorf("n1 %+v", n1)
	}
	for i, want := range []struct {
		gpus    int
		unsched bool
	}{{2, false}, {0, false}, {0, false}, {0, true}, {0, true}} {
		if got := infos[i]; len(got.GPUs) != want.gpus || got.Unschedulable != want.unsched {
			t.Errorf("%s: %d GPUs, unschedulable %v; want %d, %v", got.Name, len(got.GPUs), got.Unschedulable, want.gpus, want.unsched)
		}
	}
}

func TestBackoff(t *testing.T) {
	o, err := (&Options{BackoffBase: 10 * time.Second, BackoffMax: time.Minute}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	for n := int32(1); n <= 5; n++ {
		got = append(got, o.backoff(n))
	}
	if fmt.Sprint(got) != "[10s 20s 40s 1m0s 1m0s]" {
		t.Errorf("backoffs %v", got)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Policy: "magic"}, `policy "magic"`},
		{Options{GracePeriod: -time.Second}, "grace period -1s"},
		{Options{BackoffBase: time.Minute, BackoffMax: time.Second}, "backoff max 1s"},
		{Options{Parallelism: -1}, "parallelism -1"},
		{Options{MaxEvictions: -2}, "max evictions -2"},
		{Options{NodeSelector: "a in (b"}, "node selector"},
		{Options{LeaderElection: true, LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}, "lease duration 1s"},
	} {
		_, err := tc.o.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.o, err, tc.want)
		}
	}
	if _, err := (&Options{}).withDefaults(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestPendingReason(t *testing.T) {
	for why, want := range map[string]string{
		`queue "q": not found`: "QueueNotFound",
		"queue q: needs 1000 GPU milli beyond its nominal 0, borrowing limit is 0": "QueueQuota",
		"waiting for 1 preempted job(s) to checkpoint and exit (grace 2m0s)":       "WaitingForPreemption",
		"job a/b: 5 workers wanted, free capacity for 2 on 1 nodes":                "Unschedulable",
		"job a/b worker request gpu_milli 0: must be in 1..1000 when gpus > 0":     "InvalidSpec",
	} {
		if got := pendingReason(why); got != want {
			t.Errorf("pendingReason(%q) = %s, want %s", why, got, want)
		}
	}
}

// TestOwnedStatusPatch checks the status patch: every owned field set,
// emptied ones as null (so the merge patch removes them), and the
// trainer's fields never sent.
func TestOwnedStatusPatch(t *testing.T) {
	loss := 0.25
	st := v1alpha1.TrainingJobStatus{
		Phase: v1alpha1.PhaseRunning, Placement: []v1alpha1.WorkerPlacement{{Rank: 0, Node: "n"}},
		Step: 50, Loss: &loss, PreemptedBy: "a/b",
	}
	o := ownedOf(&st)
	o.Placement = nil
	o.PreemptedBy = nil
	raw, err := json.Marshal(map[string]any{"status": &o})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	s := got["status"]
	for _, k := range []string{"placement", "preemptedBy", "admittedAt", "conditions"} {
		if v, ok := s[k]; !ok || v != nil {
			t.Errorf("%s: %v (present %v), want null", k, v, ok)
		}
	}
	for _, k := range []string{"step", "loss", "evalMetrics", "latestCheckpoint"} {
		if _, ok := s[k]; ok {
			t.Errorf("the scheduler's patch sends the trainer's field %s", k)
		}
	}
	if s["phase"] != "Running" {
		t.Errorf("phase %v", s["phase"])
	}
	// A copy shares nothing with the original.
	c := ownedOf(&st)
	d := c.deepCopy()
	d.Placement[0].Node = "other"
	*d.PreemptedBy = "x"
	if c.Placement[0].Node != "n" || *c.PreemptedBy != "a/b" || !equalOwned(&c, c.deepCopy()) {
		t.Error("deepCopy shares memory with its original")
	}
}

func TestPlacementSummaryAndNames(t *testing.T) {
	pl := placementOf("j", 2, []core.Binding{
		{Worker: 1, Node: "b", GPUs: []core.GPUShare{{Index: 3, Milli: 1000}}},
		{Worker: 0, Node: "a", GPUs: []core.GPUShare{{Index: 0, Milli: 1000}, {Index: 1, Milli: 1000}}},
	})
	if len(pl) != 2 || pl[0].Rank != 0 || pl[0].Pod != "j-2-0" || fmt.Sprint(pl[0].GPUs) != "[0 1]" || pl[1].Node != "b" {
		t.Errorf("placement %+v", pl)
	}
	if s := placementSummary(pl); s != "2 ranks on 2 node(s): a, b" {
		t.Errorf("summary %q", s)
	}
}
