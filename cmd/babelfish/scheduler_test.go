package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSchedulerServesDashboard runs `babelfish scheduler --dashboard-listen`
// against a real kube-apiserver: the page and its state come back, with
// the cluster's TrainingJob, and the releases section says no object store
// is configured.
func TestSchedulerServesDashboard(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(filepath.Join("..", "..", "charts", "babelfish", "crds")))
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	job := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "babelfish.dev/v1alpha1", "kind": "TrainingJob",
		"metadata": map[string]any{"name": "dash-job", "namespace": "default"},
		"spec": map[string]any{
			"dataset": map[string]any{"name": "cldr-phrases", "version": "v1"},
			"model":   map[string]any{"languages": []any{"de", "fr"}, "steps": int64(100)},
			"workers": int64(2), "gpusPerWorker": int64(4), "template": map[string]any{"image": "babelfish:test"},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "babelfish.dev", Version: "v1alpha1", Resource: "trainingjobs"}
	if _, err := dyn.Resource(gvr).Namespace("default").Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	dash := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"scheduler", "--kubeconfig", kc, "--leader-elect=false", "--listen", freeAddr(t), "--dashboard-listen", dash, "--dashboard-title", "test cluster"})
		done <- root.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("scheduler: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("scheduler did not stop within 30s")
		}
	}()

	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + dash + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b), err
	}
	var st dashboard.State
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := get("/api/state")
		if err == nil {
			st = dashboard.State{}
			err = json.Unmarshal([]byte(body), &st)
		}
		if err == nil && len(st.Jobs) == 1 && st.Jobs[0].Phase == "Pending" && st.Jobs[0].Message != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api/state never showed the pending job: %v %+v\n%s", err, st, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Title != "test cluster" {
		t.Errorf("title %q", st.Title)
	}
	if j := st.Jobs[0]; j.Name != "dash-job" || j.Workers != 2 || j.GPUsPerWorker != 4 {
		t.Errorf("job %+v", j)
	}
	if e := st.Errors["releases"]; !strings.Contains(e, "no object store configured") {
		t.Errorf("releases error %q: want it to say no object store is configured", e)
	}
	for _, section := range []string{"gpus", "jobs", "serving"} {
		if e, ok := st.Errors[section]; ok {
			t.Errorf("section %s failed: %s", section, e)
		}
	}
	page, err := get("/")
	if err != nil || !strings.Contains(page, "<html") {
		t.Errorf("page: %v\n%.200s", err, page)
	}
	t.Logf("dashboard on %s: job %s %s (%s)", dash, st.Jobs[0].Name, st.Jobs[0].Phase, st.Jobs[0].Message)
}
