package controller

import (
	"testing"

	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// TestWorkerPodIsRestricted checks every rank's pod against Pod Security
// "restricted" with the admission's own policy code, so a namespace that
// enforces it admits the ranks; whole GPUs and GPU shares alike.
func TestWorkerPodIsRestricted(t *testing.T) {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range []v1alpha1.WorkerPlacement{
		{Rank: 0, Node: "gpu-1", GPUs: []int32{0, 1}, GPUMilli: 1000},
		{Rank: 1, Node: "gpu-2", GPUs: []int32{3}, GPUMilli: 500},
	} {
		pod, err := WorkerPod(testJob(), 1, pl, "babelfish", 30)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range e.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec) {
			if !r.Allowed {
				t.Errorf("rank %d: Pod Security restricted refuses it: %s: %s", pl.Rank, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
		c := pod.Spec.Containers[0]
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("rank %d: root filesystem is writable", pl.Rank)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/tmp" {
			t.Errorf("rank %d: mounts %+v; want a scratch /tmp", pl.Rank, c.VolumeMounts)
		}
	}
}
