package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/scheduler/local"
)

func TestFlagsFromJobEnv(t *testing.T) {
	newFS := func() *pflag.FlagSet {
		fs := pflag.NewFlagSet("trainer", pflag.ContinueOnError)
		for _, n := range []string{"job", "dataset", "dataset-version", "langs", "steps", "global-batch", "lr", "seed", "enc", "units", "checkpoint-every", "checkpoint-interval"} {
			fs.String(n, "", "")
		}
		return fs
	}
	tests := []struct {
		name    string
		env     map[string]string
		changed map[string]string // set on the command line first
		want    map[string]string
		wantErr string
	}{
		{"spec to flags", map[string]string{
			"BABELFISH_JOB": "tiny-1", "BABELFISH_DATASET": "synth", "BABELFISH_DATASET_VERSION": "v1", "BABELFISH_CHECKPOINT_INTERVAL": "10m0s",
			"BABELFISH_MODEL_CONFIG": `{"languages":["de","en"],"steps":40,"batchSize":8,"learningRate":0.003,"seed":7,"parameters":{"enc":[24,16],"units":8,"checkpoint-every":"10"}}`,
		}, nil, map[string]string{"job": "tiny-1", "dataset": "synth", "dataset-version": "v1", "langs": "de,en", "steps": "40",
			"global-batch": "8", "lr": "0.003", "seed": "7", "enc": "24,16", "units": "8", "checkpoint-every": "10", "checkpoint-interval": "10m0s"}, ""},
		{"command line wins", map[string]string{"BABELFISH_MODEL_CONFIG": `{"languages":["de","en"],"steps":40}`},
			map[string]string{"steps": "99"}, map[string]string{"steps": "99", "langs": "de,en"}, ""},
		{"unknown parameter", map[string]string{"BABELFISH_MODEL_CONFIG": `{"languages":["de","en"],"steps":4,"parameters":{"layers":3}}`},
			nil, nil, `parameters.layers: "layers" is not a trainer flag`},
		{"store flags refused", map[string]string{"BABELFISH_MODEL_CONFIG": `{"languages":["de","en"],"steps":4,"parameters":{"s3-endpoint":"x"}}`},
			nil, nil, "parameters.s3-endpoint: not settable"},
		{"bad json", map[string]string{"BABELFISH_MODEL_CONFIG": `{`}, nil, nil, "BABELFISH_MODEL_CONFIG"},
		{"nothing set", nil, nil, map[string]string{"steps": ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFS()
			for k, v := range tt.changed {
				if err := fs.Set(k, v); err != nil {
					t.Fatal(err)
				}
			}
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			err := flagsFromJobEnv(fs, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got := fs.Lookup(k).Value.String(); got != v {
					t.Errorf("--%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

const jobYAML = `apiVersion: babelfish.dev/v1alpha1
kind: TrainingJob
metadata:
  name: %NAME%
spec:
  dataset: {name: synth, version: v1}
  model: {languages: [de, en], steps: 10}
  workers: %WORKERS%
  gpusPerWorker: 0
  template:
    image: babelfish:dev
    command: [sh, -c]
    args: ["echo hello from rank $BABELFISH_RANK of $BABELFISH_WORLD_SIZE; exec sleep 30"]
`

func writeJob(t *testing.T, name string, workers string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	body := strings.NewReplacer("%NAME%", name, "%WORKERS%", workers).Replace(jobYAML)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadJobFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body, want string
	}{
		{"valid", strings.NewReplacer("%NAME%", "a", "%WORKERS%", "2").Replace(jobYAML), ""},
		{"typo", "apiVersion: babelfish.dev/v1alpha1\nkind: TrainingJob\nspec:\n  workerz: 2\n", `unknown field "workerz"`},
		{"other kind", "apiVersion: v1\nkind: Pod\n", `kind "Pod": want babelfish.dev/v1alpha1 TrainingJob`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := readJobFile(p, nil)
			if tt.want == "" {
				if err != nil || j.Spec.Workers != 2 || j.Spec.Template.Command[0] != "sh" {
					t.Fatalf("%v %+v", err, j)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestJobCommandsAgainstUp runs submit, jobs, logs and cancel against the
// job API an `up` serves, with ranks that are real processes.
func TestJobCommandsAgainstUp(t *testing.T) {
	exec, err := local.New(t.TempDir(), local.WithInterval(50*time.Millisecond), local.WithGracePeriod(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- exec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(local.Handler(exec))
	t.Cleanup(srv.Close)
	server := strings.TrimPrefix(srv.URL, "http://")

	out, err := run(t, "submit", "--server", server, "-f", writeJob(t, "hello", "2"))
	if err != nil || !strings.Contains(out, "trainingjob/hello submitted to babelfish up at "+srv.URL) {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err = run(t, "logs", "hello", "--rank", "1", "--server", server)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "hello from rank 1 of 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rank 1 never wrote its greeting:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err = run(t, "jobs", "--server", server)
	if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "Running") || !strings.Contains(out, "NAME") {
		t.Fatalf("jobs: %v\n%s", err, out)
	}
	if out, err = run(t, "cancel", "hello", "--server", server); err != nil || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, err = run(t, "jobs", "hello", "-o", "json", "--server", server)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, `"phase": "Failed"`) && strings.Contains(out, `"reason": "Cancelled"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not cancelled:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	errCases := []struct {
		name string
		args []string
		want string
	}{
		{"duplicate", []string{"submit", "--server", server, "-f", writeJob(t, "hello", "1")}, "already exists"},
		{"invalid", []string{"submit", "--server", server, "-f", writeJob(t, "zero", "0")}, "spec.workers 0: want 1..1024"},
		{"no file", []string{"submit", "--server", server}, "-f/--file: required"},
		{"unknown job", []string{"logs", "nope", "--server", server}, "no such job: nope"},
		{"cancel twice", []string{"cancel", "hello", "--server", server}, "already finished"},
		{"no server", []string{"jobs", "--state-dir", t.TempDir()}, "`babelfish up` is not running"},
		{"both targets", []string{"jobs", "--server", server, "--kubeconfig", "x"}, "give one"},
		{"bad output", []string{"jobs", "--server", server, "-o", "xml"}, `--output "xml"`},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envServer, "")
			if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestJobCommandsAgainstKubernetes runs the same commands against a real
// API server with the CRDs: the job becomes a TrainingJob object, the CRD's
// validation rejects a bad one, and cancel deletes it.
func TestJobCommandsAgainstKubernetes(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(filepath.Join("..", "..", "charts", "babelfish", "crds")))
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "submit", "--kubeconfig", kc, "-n", "default", "-f", writeJob(t, "kube-a", "2"))
	if err != nil || !strings.Contains(out, "trainingjob/kube-a submitted to cluster") {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	out, err = run(t, "jobs", "--kubeconfig", kc, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name": "kube-a"`, `"namespace": "default"`, `"workers": 2`, `"checkpointInterval": "10m0s"`} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs lacks %s (defaults come from the CRD):\n%s", want, out)
		}
	}
	if _, err := run(t, "submit", "--kubeconfig", kc, "-f", writeJob(t, "kube-b", "0")); err == nil || !strings.Contains(err.Error(), "spec.workers") {
		t.Fatalf("invalid job: err = %v, want the CRD naming spec.workers", err)
	}
	if _, err := run(t, "logs", "kube-a", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "no worker pod") {
		t.Fatalf("logs without pods: err = %v", err)
	}
	if out, err = run(t, "cancel", "kube-a", "--kubeconfig", kc); err != nil || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	if _, err := run(t, "jobs", "kube-a", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("after cancel: err = %v, want not found", err)
	}
}
