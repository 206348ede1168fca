package local

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

func validJob(name string) *v1alpha1.TrainingJob {
	return &v1alpha1.TrainingJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "babelfish.dev/v1alpha1", Kind: "TrainingJob"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.TrainingJobSpec{
			Dataset:  v1alpha1.DatasetRef{Name: "synth", Version: "v1"},
			Model:    v1alpha1.ModelConfig{Languages: []string{"de", "en"}, Steps: 20},
			Workers:  2,
			Template: v1alpha1.WorkerTemplate{Image: "babelfish"},
		},
	}
}

func TestValidate(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	tests := []struct {
		name string
		mod  func(j *v1alpha1.TrainingJob)
		want string // "" means valid
	}{
		{"valid", func(*v1alpha1.TrainingJob) {}, ""},
		{"no name", func(j *v1alpha1.TrainingJob) { j.Name = "" }, "metadata.name: required"},
		{"long name", func(j *v1alpha1.TrainingJob) { j.Name = strings.Repeat("a", 41) }, "at most 40"},
		{"bad name", func(j *v1alpha1.TrainingJob) { j.Name = "Job_1" }, "DNS-1035"},
		{"wrong kind", func(j *v1alpha1.TrainingJob) { j.Kind = "Pod" }, `kind "Pod"`},
		{"no dataset", func(j *v1alpha1.TrainingJob) { j.Spec.Dataset.Name = "" }, "spec.dataset.name: required"},
		{"one language", func(j *v1alpha1.TrainingJob) { j.Spec.Model.Languages = []string{"de"} }, "spec.model.languages: 1 given, want 2..256"},
		{"bad language", func(j *v1alpha1.TrainingJob) { j.Spec.Model.Languages = []string{"de", "EN"} }, "spec.model.languages[1]"},
		{"dup language", func(j *v1alpha1.TrainingJob) { j.Spec.Model.Languages = []string{"de", "de"} }, "duplicate"},
		{"zero steps", func(j *v1alpha1.TrainingJob) { j.Spec.Model.Steps = 0 }, "spec.model.steps 0: want 1..100000000"},
		{"zero workers", func(j *v1alpha1.TrainingJob) { j.Spec.Workers = 0 }, "spec.workers 0: want 1..1024"},
		{"too many gpus", func(j *v1alpha1.TrainingJob) { j.Spec.GPUsPerWorker = 65 }, "spec.gpusPerWorker 65: want 0..64"},
		{"milli needs one gpu", func(j *v1alpha1.TrainingJob) { j.Spec.GPUMilli = i32(500); j.Spec.GPUsPerWorker = 2 }, "needs gpusPerWorker: 1"},
		{"short interval", func(j *v1alpha1.TrainingJob) {
			j.Spec.CheckpointInterval = &metav1.Duration{Duration: time.Second}
		}, "spec.checkpointInterval 1s: want 10s..24h"},
		{"backoff limit", func(j *v1alpha1.TrainingJob) { j.Spec.BackoffLimit = i32(101) }, "spec.backoffLimit 101: want 0..100"},
		{"auto without metric", func(j *v1alpha1.TrainingJob) { j.Spec.Promotion.Mode = v1alpha1.PromotionAuto }, "spec.promotion.metric: required when mode is Auto"},
		{"no image", func(j *v1alpha1.TrainingJob) { j.Spec.Template.Image = "" }, "spec.template.image: required"},
		{"valueFrom", func(j *v1alpha1.TrainingJob) {
			j.Spec.Template.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{}}}
		}, "valueFrom is not supported"},
		{"priority", func(j *v1alpha1.TrainingJob) { j.Spec.Priority = 1001 }, "spec.priority 1001: want 0..1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := validJob("job-a")
			tt.mod(j)
			err := Validate(j)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("no error, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestDefaultedAndRequest(t *testing.T) {
	j := validJob("job-a")
	j.Spec.GPUsPerWorker = 1
	milli := int32(250)
	j.Spec.GPUMilli = &milli
	cpu := resource.MustParse("1500m")
	mem := resource.MustParse("1G")
	j.Spec.Template.Resources = v1alpha1.WorkerResources{CPU: &cpu, Memory: &mem}
	d := Defaulted(j)
	if d.Spec.CheckpointInterval.Duration != DefaultCheckpointInterval || *d.Spec.BackoffLimit != DefaultBackoffLimit ||
		d.Spec.Model.BatchSize != DefaultBatchSize || d.Spec.Promotion.Mode != v1alpha1.PromotionManual {
		t.Fatalf("defaults not applied: %+v", d.Spec)
	}
	if j.Spec.BackoffLimit != nil {
		t.Fatal("Defaulted changed its argument")
	}
	r := Request(d)
	want := core.Request{CPUMilli: 1500, MemoryMiB: 954, GPUs: 1, GPUMilli: 250}
	if r.CPUMilli != want.CPUMilli || r.MemoryMiB != want.MemoryMiB || r.GPUs != want.GPUs || r.GPUMilli != want.GPUMilli {
		t.Fatalf("request %+v, want %+v", r, want)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n    int32
		want time.Duration
	}{{1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {6, 5 * time.Minute}, {40, 5 * time.Minute}}
	for _, tt := range tests {
		if got := Backoff(tt.n, 10*time.Second, 5*time.Minute); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v // later wins, as for exec
	}
	return m
}

func TestWorkerEnv(t *testing.T) {
	j := Defaulted(validJob("job-a"))
	j.Spec.Template.Env = []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "BABELFISH_RANK", Value: "7"}}
	base := []string{"PATH=/bin", "BABELFISH_RANK=9", "BABELFISH_PEERS=x:1", "BABELFISH_RING_PEERS=x:2", "BABELFISH_S3_ENDPOINT=127.0.0.1:9000"}
	tests := []struct {
		name string
		w    Worker
		want map[string]string
		gone []string
	}{
		{"rank 0 without GPUs", Worker{Rank: 0, Rendezvous: "127.0.0.1:4000", Generation: 1},
			map[string]string{"BABELFISH_RANK": "0", "BABELFISH_WORLD_SIZE": "2", "BABELFISH_LISTEN": "127.0.0.1:4000",
				"BABELFISH_RENDEZVOUS": "127.0.0.1:4000", "BABELFISH_JOB_ID": "job-a", "BABELFISH_GENERATION": "1",
				"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": "", "FOO": "bar", "PATH": "/bin",
				"BABELFISH_S3_ENDPOINT": "127.0.0.1:9000", "BABELFISH_DATASET": "synth", "BABELFISH_DATASET_VERSION": "v1",
				"BABELFISH_CHECKPOINT_INTERVAL": "10m0s"},
			[]string{"BABELFISH_PEERS", "BABELFISH_RING_PEERS", "BABELFISH_RESUME_FROM"}},
		{"rank 1 with GPUs, resuming", Worker{Rank: 1, Rendezvous: "127.0.0.1:4000", Generation: 3, GPUs: []int{2, 3}, GPUMilli: 1000, ResumeFrom: "checkpoints/job-a/000000000010/"},
			map[string]string{"BABELFISH_RANK": "1", "BABELFISH_LISTEN": "127.0.0.1:0", "BABELFISH_GPU_INDICES": "2,3",
				"NVIDIA_VISIBLE_DEVICES": "2,3", "CUDA_VISIBLE_DEVICES": "2,3", "BABELFISH_GENERATION": "3",
				"BABELFISH_RESUME_FROM": "checkpoints/job-a/000000000010/"},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := WorkerEnv(base, j, tt.w)
			if err != nil {
				t.Fatal(err)
			}
			m := envMap(env)
			for k, v := range tt.want {
				if got, ok := m[k]; !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range tt.gone {
				if _, ok := m[k]; ok {
					t.Errorf("%s is set, want unset", k)
				}
			}
			// Each name once: what the rank sees does not depend on order.
			seen := map[string]bool{}
			for _, kv := range env {
				k, _, _ := strings.Cut(kv, "=")
				if seen[k] {
					t.Errorf("%s set twice", k)
				}
				seen[k] = true
			}
			if !strings.Contains(m["BABELFISH_MODEL_CONFIG"], `"steps":20`) {
				t.Errorf("model config %q lacks the steps", m["BABELFISH_MODEL_CONFIG"])
			}
		})
	}
}

func TestArgv(t *testing.T) {
	tests := []struct {
		name string
		t    v1alpha1.WorkerTemplate
		want []string
	}{
		{"default", v1alpha1.WorkerTemplate{}, []string{"/self", "trainer"}},
		{"image entrypoint args", v1alpha1.WorkerTemplate{Args: []string{"trainer", "--steps", "5"}}, []string{"/self", "trainer", "--steps", "5"}},
		{"babelfish command", v1alpha1.WorkerTemplate{Command: []string{"/usr/local/bin/babelfish", "trainer"}, Args: []string{"--lr", "0.1"}}, []string{"/self", "trainer", "--lr", "0.1"}},
		{"other command", v1alpha1.WorkerTemplate{Command: []string{"sh", "-c"}, Args: []string{"echo hi"}}, []string{"sh", "-c", "echo hi"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Argv("/self", &tt.t); !slices.Equal(got, tt.want) {
				t.Fatalf("Argv = %q, want %q", got, tt.want)
			}
		})
	}
}
