package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestNominalMilli(t *testing.T) {
	gpus, milli := int32(3), int64(2500)
	for _, tc := range []struct {
		name string
		spec QueueSpec
		want int64
	}{
		{"whole GPUs", QueueSpec{NominalGPUs: &gpus}, 3000},
		{"milli", QueueSpec{NominalGPUMilli: &milli}, 2500},
		{"none", QueueSpec{}, 0},
	} {
		if got := tc.spec.NominalMilli(); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestTerminalPhases(t *testing.T) {
	for p, want := range map[TrainingJobPhase]bool{
		PhasePending: false, PhaseAdmitted: false, PhaseRunning: false, PhaseRestarting: false,
		PhasePreempted: false, PhaseSucceeded: true, PhaseFailed: true,
	} {
		if p.Terminal() != want {
			t.Errorf("%s.Terminal() = %v", p, !want)
		}
	}
}

// TestScheme checks that every type is registered under the group's
// kinds, and that deep copies share nothing.
func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"TrainingJob", "TrainingJobList", "Queue", "QueueList", "TranslationModel", "TranslationModelList"} {
		if !s.Recognizes(GroupVersion.WithKind(kind)) {
			t.Errorf("kind %s not registered", kind)
		}
	}
	loss := 0.5
	j := &TrainingJob{Spec: TrainingJobSpec{GPUModels: []string{"A100"}}, Status: TrainingJobStatus{
		Loss: &loss, EvalMetrics: map[string]float64{"mcd": 6}, Placement: []WorkerPlacement{{GPUs: []int32{1}}},
	}}
	c := j.DeepCopy()
	c.Spec.GPUModels[0] = "H100"
	*c.Status.Loss = 9
	c.Status.EvalMetrics["mcd"] = 1
	c.Status.Placement[0].GPUs[0] = 7
	if j.Spec.GPUModels[0] != "A100" || *j.Status.Loss != 0.5 || j.Status.EvalMetrics["mcd"] != 6 || j.Status.Placement[0].GPUs[0] != 1 {
		t.Errorf("deep copy shares memory: %+v", j)
	}
}
