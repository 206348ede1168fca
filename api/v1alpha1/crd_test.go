package v1alpha1_test

import (
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/testenv"
)

// crdDir holds the CRDs generated from this package's types.
const crdDir = "../../charts/babelfish/crds"

func validJob(name string) map[string]any {
	return map[string]any{
		"apiVersion": "babelfish.dev/v1alpha1",
		"kind":       "TrainingJob",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"dataset":       map[string]any{"name": "cldr-phrases", "version": "v1"},
			"model":         map[string]any{"languages": []any{"en", "fr"}, "steps": int64(1000)},
			"workers":       int64(2),
			"gpusPerWorker": int64(1),
			"queue":         "research",
			"priority":      int64(10),
			"template":      map[string]any{"image": "babelfish:dev"},
		},
	}
}

func validQueue(name string) map[string]any {
	return map[string]any{
		"apiVersion": "babelfish.dev/v1alpha1",
		"kind":       "Queue",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"nominalGPUs": int64(8)},
	}
}

func validModel(name string) map[string]any {
	return map[string]any{
		"apiVersion": "babelfish.dev/v1alpha1",
		"kind":       "TranslationModel",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec":       map[string]any{"model": "s2st", "release": int64(3)},
	}
}

// set writes v at the dotted path of obj (creating maps on the way); a nil
// v deletes the field.
func set(obj map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	m := obj
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

func newClient(t *testing.T) client.Client {
	t.Helper()
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(crdDir))
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config(), client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWithAPIServer runs the tests that need the real API server on one
// control plane that serves nothing but the generated CRDs.
func TestWithAPIServer(t *testing.T) {
	c := newClient(t)
	t.Run("validation", func(t *testing.T) { testValidation(t, c) })
	t.Run("defaults and immutability", func(t *testing.T) { testDefaultsAndImmutability(t, c) })
}

// testValidation checks that bad specs are rejected with a message naming
// the field, and good ones accepted.
func testValidation(t *testing.T, c client.Client) {
	ctx := t.Context()

	type edit struct {
		path string
		v    any
	}
	cases := []struct {
		name  string
		kind  string // Queue, TranslationModel; empty is TrainingJob
		edits []edit
		// want lists substrings of the error; none means accepted.
		want []string
	}{
		{name: "valid job", edits: nil},
		{name: "valid sharing job", edits: []edit{{"spec.gpuMilli", int64(250)}}},
		{name: "valid cpu-only job", edits: []edit{{"spec.gpusPerWorker", int64(0)}}},
		{name: "workers 0", edits: []edit{{"spec.workers", int64(0)}}, want: []string{"spec.workers", "greater than or equal to 1"}},
		{name: "workers too many", edits: []edit{{"spec.workers", int64(5000)}}, want: []string{"spec.workers", "less than or equal to 1024"}},
		{name: "workers missing", edits: []edit{{"spec.workers", nil}}, want: []string{"spec.workers", "Required value"}},
		{name: "negative gpus", edits: []edit{{"spec.gpusPerWorker", int64(-1)}}, want: []string{"spec.gpusPerWorker", "greater than or equal to 0"}},
		{name: "gpus over 64", edits: []edit{{"spec.gpusPerWorker", int64(65)}}, want: []string{"spec.gpusPerWorker", "less than or equal to 64"}},
		{name: "gpuMilli 0", edits: []edit{{"spec.gpuMilli", int64(0)}}, want: []string{"spec.gpuMilli", "greater than or equal to 1"}},
		{name: "gpuMilli over 1000", edits: []edit{{"spec.gpuMilli", int64(1500)}}, want: []string{"spec.gpuMilli", "less than or equal to 1000"}},
		{name: "gpuMilli with 2 gpus", edits: []edit{{"spec.gpuMilli", int64(500)}, {"spec.gpusPerWorker", int64(2)}}, want: []string{"spec.gpuMilli", "needs gpusPerWorker: 1"}},
		{name: "missing dataset", edits: []edit{{"spec.dataset", nil}}, want: []string{"spec.dataset", "Required value"}},
		{name: "dataset without version", edits: []edit{{"spec.dataset.version", nil}}, want: []string{"spec.dataset.version", "Required value"}},
		{name: "bad dataset name", edits: []edit{{"spec.dataset.name", "Bad Name!"}}, want: []string{"spec.dataset.name", "should match"}},
		{name: "priority too high", edits: []edit{{"spec.priority", int64(5000)}}, want: []string{"spec.priority", "less than or equal to 1000"}},
		{name: "negative priority", edits: []edit{{"spec.priority", int64(-3)}}, want: []string{"spec.priority", "greater than or equal to 0"}},
		{name: "priority not a number", edits: []edit{{"spec.priority", "high"}}, want: []string{"spec.priority", "must be of type integer"}},
		{name: "bad queue name", edits: []edit{{"spec.queue", "Team_A"}}, want: []string{"spec.queue", "should match"}},
		{name: "missing model", edits: []edit{{"spec.model", nil}}, want: []string{"spec.model", "Required value"}},
		{name: "zero steps", edits: []edit{{"spec.model.steps", int64(0)}}, want: []string{"spec.model.steps", "greater than or equal to 1"}},
		{name: "one language", edits: []edit{{"spec.model.languages", []any{"en"}}}, want: []string{"spec.model.languages", "at least 2 items"}},
		{name: "bad language", edits: []edit{{"spec.model.languages", []any{"en", "French"}}}, want: []string{"spec.model.languages[1]", "should match"}},
		{name: "zero learning rate", edits: []edit{{"spec.model.learningRate", 0.0}}, want: []string{"spec.model.learningRate", "greater than 0"}},
		{name: "checkpoint interval too short", edits: []edit{{"spec.checkpointInterval", "5s"}}, want: []string{"spec.checkpointInterval", "between 10s and 24h"}},
		{name: "checkpoint interval garbage", edits: []edit{{"spec.checkpointInterval", "soon"}}, want: []string{"spec.checkpointInterval", "should match"}},
		{name: "auto promotion without metric", edits: []edit{{"spec.promotion.mode", "Auto"}}, want: []string{"spec.promotion.metric", "required when mode is Auto"}},
		{name: "unknown promotion mode", edits: []edit{{"spec.promotion.mode", "Sometimes"}}, want: []string{"spec.promotion.mode", "Unsupported value"}},
		{name: "missing image", edits: []edit{{"spec.template.image", nil}}, want: []string{"spec.template.image", "Required value"}},
		{name: "negative cpu", edits: []edit{{"spec.template.resources.cpu", "-2"}}, want: []string{"spec.template.resources.cpu", "must not be negative"}},
		{name: "bad port", edits: []edit{{"spec.template.rendezvousPort", int64(70000)}}, want: []string{"spec.template.rendezvousPort", "less than or equal to 65535"}},
		{name: "negative backoff limit", edits: []edit{{"spec.backoffLimit", int64(-1)}}, want: []string{"spec.backoffLimit", "greater than or equal to 0"}},
		{name: "name too long", edits: []edit{{"metadata.name", strings.Repeat("a", 41)}}, want: []string{"metadata.name", "at most 40 characters"}},
		{name: "name not a DNS-1035 label", edits: []edit{{"metadata.name", "9lives"}}, want: []string{"metadata.name", "DNS-1035"}},
		{name: "valid queue", kind: "Queue"},
		{name: "queue with milli quota", kind: "Queue", edits: []edit{{"spec.nominalGPUs", nil}, {"spec.nominalGPUMilli", int64(2500)}}},
		{name: "queue with both quotas", kind: "Queue", edits: []edit{{"spec.nominalGPUMilli", int64(2500)}}, want: []string{"spec", "exactly one of nominalGPUs and nominalGPUMilli"}},
		{name: "queue with no quota", kind: "Queue", edits: []edit{{"spec.nominalGPUs", nil}}, want: []string{"spec", "exactly one of nominalGPUs and nominalGPUMilli"}},
		{name: "queue weight 0", kind: "Queue", edits: []edit{{"spec.weight", int64(0)}}, want: []string{"spec.weight", "greater than or equal to 1"}},
		{name: "queue negative borrowing", kind: "Queue", edits: []edit{{"spec.borrowingLimitGPUMilli", int64(-1)}}, want: []string{"spec.borrowingLimitGPUMilli", "greater than or equal to 0"}},
	}
	cases = append(cases, []struct {
		name  string
		kind  string
		edits []edit
		want  []string
	}{
		{name: "valid model", kind: "TranslationModel"},
		{name: "model release 0", kind: "TranslationModel", edits: []edit{{"spec.release", int64(0)}}, want: []string{"spec.release", "greater than or equal to 1"}},
		{name: "canary without percent", kind: "TranslationModel", edits: []edit{{"spec.strategy", "Canary"}}, want: []string{"spec.canaryPercent", "required when strategy is Canary"}},
		{name: "model without name", kind: "TranslationModel", edits: []edit{{"spec.model", nil}}, want: []string{"spec.model", "Required value"}},
	}...)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "job-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
			obj := validJob(name)
			switch tc.kind {
			case "Queue":
				obj = validQueue(name)
			case "TranslationModel":
				obj = validModel(name)
			}
			for _, e := range tc.edits {
				set(obj, e.path, e.v)
			}
			u := &unstructured.Unstructured{Object: obj}
			err := c.Create(ctx, u)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("create succeeded, want an error naming %q", tc.want)
			}
			t.Logf("rejected: %v", err)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v: want an Invalid error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: does not contain %q", err, w)
				}
			}
		})
	}
}

// testDefaultsAndImmutability checks the defaults the API server fills,
// that the gang's shape cannot change after creation, and the status
// subresource.
func testDefaultsAndImmutability(t *testing.T, c client.Client) {
	ctx := t.Context()
	if err := c.Create(ctx, &unstructured.Unstructured{Object: validJob("defaults")}); err != nil {
		t.Fatal(err)
	}
	var j v1alpha1.TrainingJob
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "defaults"}, &j); err != nil {
		t.Fatal(err)
	}
	switch {
	case j.Spec.CheckpointInterval == nil || j.Spec.CheckpointInterval.Duration != 10*time.Minute:
		t.Errorf("checkpointInterval default %v, want 10m", j.Spec.CheckpointInterval)
	case j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 3:
		t.Errorf("backoffLimit default %v, want 3", j.Spec.BackoffLimit)
	case j.Spec.Promotion.Mode != v1alpha1.PromotionManual:
		t.Errorf("promotion.mode default %q, want Manual", j.Spec.Promotion.Mode)
	case j.Spec.Template.RendezvousPort != v1alpha1.DefaultRendezvousPort:
		t.Errorf("rendezvousPort default %d, want %d", j.Spec.Template.RendezvousPort, v1alpha1.DefaultRendezvousPort)
	case j.Spec.Model.BatchSize != 64:
		t.Errorf("batchSize default %d, want 64", j.Spec.Model.BatchSize)
	}

	for _, tc := range []struct {
		name string
		edit func(*v1alpha1.TrainingJob)
		want string // empty: the update is allowed
	}{
		{"workers", func(j *v1alpha1.TrainingJob) { j.Spec.Workers = 4 }, "workers is immutable"},
		{"gpus", func(j *v1alpha1.TrainingJob) { j.Spec.GPUsPerWorker = 2 }, "gpusPerWorker is immutable"},
		{"dataset", func(j *v1alpha1.TrainingJob) { j.Spec.Dataset.Version = "v2" }, "dataset is immutable"},
		{"queue", func(j *v1alpha1.TrainingJob) { j.Spec.Queue = "other" }, "queue is immutable"},
		{"priority", func(j *v1alpha1.TrainingJob) { j.Spec.Priority = 99 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur v1alpha1.TrainingJob
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "defaults"}, &cur); err != nil {
				t.Fatal(err)
			}
			tc.edit(&cur)
			err := c.Update(ctx, &cur)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("update: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("update: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// The status subresource: a status write through the main resource is
	// ignored, through /status it lands.
	var cur v1alpha1.TrainingJob
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "defaults"}, &cur); err != nil {
		t.Fatal(err)
	}
	cur.Status.Phase = v1alpha1.PhaseRunning
	if err := c.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "defaults"}, &cur); err != nil {
		t.Fatal(err)
	}
	if cur.Status.Phase != "" {
		t.Fatalf("status written through the main resource: phase %q", cur.Status.Phase)
	}
	cur.Status.Phase = v1alpha1.PhaseRunning
	if err := c.Status().Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "defaults"}, &cur); err != nil {
		t.Fatal(err)
	}
	if cur.Status.Phase != v1alpha1.PhaseRunning {
		t.Fatalf("status through /status: phase %q, want Running", cur.Status.Phase)
	}
}
