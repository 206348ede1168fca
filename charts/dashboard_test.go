package charts

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/scheduler/controller"
	"babelfish.dev/babelfish/trainer"
)

// servingMetrics are the serving panels' series (serving/metrics.go).
// Most are labelled by release and method and exist only once a request
// was answered, which needs a trained release: the test lists them in its
// log and fails on any other name it cannot find.
var servingMetrics = []string{"babelfish_serving_"}

type grafanaTarget struct {
	Expr   string `json:"expr"`
	RefID  string `json:"refId"`
	Legend string `json:"legendFormat"`
}

type grafanaPanel struct {
	ID      int             `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	Targets []grafanaTarget `json:"targets"`
	GridPos struct{ X, Y, W, H int }
	Source  json.RawMessage `json:"datasource"`
}

type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

// metricName finds the series names in a PromQL expression: Babelfish's
// and dcgm-exporter's names.
var metricName = regexp.MustCompile(`\b(DCGM_FI_[A-Z0-9_]+|babelfish_[a-z0-9_]+)\b`)

// exportedMetrics gathers the metric family names the real components
// register: the GPU agent on go-nvml's simulated DGX A100 (what
// `gpu-agent --fake-gpus=dgxa100` serves), the scheduler controller after
// a pass over a real API server with a TrainingJob (labelled series such
// as babelfish_scheduler_jobs exist only once a pass has counted jobs),
// and the trainer.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	fake, err := nvml.NewFake("dgxa100")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nvml.New(t.Context(), nvml.Config{
		NVML: fake.Interface(), Hostname: "node-a", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("gpu agent: %v", err)
		}
		_ = agent.Close()
	})

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(agent.Collector()); err != nil {
		t.Fatal(err)
	}
	// Per-XID series exist only once an XID happened: make one, as a GPU
	// that falls off the bus (XID 79) would.
	waitFor(t, "the agent to watch GPU 0 for XIDs", func() bool { return fake.Watched(0) })
	if err := fake.InjectXID(0, 79); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the XID to show in the metrics", func() bool {
		fams, _ := reg.Gather()
		return slices.ContainsFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == "babelfish_gpu_xid_errors_total" })
	})
	schedulerPass(t, reg)
	if _, err := trainer.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// TestGrafanaDashboard: the dashboard is valid Grafana JSON with the panels
// the issue asks for, every query names a metric the code exports, and the
// chart ships it unchanged in its ConfigMap.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "babelfish.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q: both are required", d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Error("dashboard has no datasource variable: it would be tied to one Prometheus")
	}

	exported := exportedMetrics(t)
	ids := map[int]bool{}
	used := map[string][]string{}
	var exprs int
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q query %s: %q names no metric", p.Title, tg.RefID, tg.Expr)
			}
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q query %s: unbalanced brackets in %q", p.Title, tg.RefID, tg.Expr)
			}
			for _, n := range names {
				used[n] = append(used[n], p.Title)
			}
		}
	}

	var unchecked []string
	for n, panels := range used {
		switch {
		case exported[n]:
		case slices.ContainsFunc(servingMetrics, func(s string) bool { return strings.HasPrefix(n, s) }):
			unchecked = append(unchecked, n)
		default:
			t.Errorf("metric %s (panels %q) is exported by no Babelfish component", n, panels)
		}
	}
	sort.Strings(unchecked)
	t.Logf("%d panels, %d queries, %d metric names; serving names not checked against a running server: %v", len(ids), exprs, len(used), unchecked)

	// What the issue asks the dashboard to show.
	titles := make([]string, 0, len(d.Panels))
	for _, p := range d.Panels {
		titles = append(titles, strings.ToLower(p.Title))
	}
	for _, want := range []string{"gpu utilization by node", "gpu memory used by node and gpu", "gpu utilization by pod", "gpu memory by pod", "unhealthy gpus", "queue depth", "job phase", "serving qps", "serving latency"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no panel titled like %q", want)
		}
	}

	// The chart's ConfigMap carries the same JSON.
	for _, o := range render(t) {
		if o.GetKind() != "ConfigMap" || o.GetLabels()["grafana_dashboard"] != "1" {
			continue
		}
		data, _, _ := unstructured.NestedString(o.Object, "data", "babelfish.json")
		if strings.TrimSpace(data) != strings.TrimSpace(string(raw)) {
			t.Error("the ConfigMap's babelfish.json differs from dashboards/babelfish.json")
		}
		return
	}
	t.Error("no ConfigMap labelled grafana_dashboard=1 rendered")
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// schedulerPass runs the scheduler controller, its metrics on reg, against
// a real kube-apiserver holding one TrainingJob, until it has finished a
// pass.
func schedulerPass(t *testing.T, reg prometheus.Registerer) {
	t.Helper()
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(filepath.Join(chartDir, "crds")))
	dyn, err := dynamic.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	job := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "babelfish.dev/v1alpha1", "kind": "TrainingJob",
		"metadata": map[string]any{"name": "metrics-job", "namespace": "default"},
		"spec": map[string]any{
			"dataset": map[string]any{"name": "cldr-phrases", "version": "v1"},
			"model":   map[string]any{"languages": []any{"de", "fr"}, "steps": int64(100)},
			"workers": int64(1), "gpusPerWorker": int64(1), "queue": "research",
			"template": map[string]any{"image": "babelfish:test"},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "babelfish.dev", Version: "v1alpha1", Resource: "trainingjobs"}
	if _, err := dyn.Resource(gvr).Namespace("default").Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	passed := make(chan struct{})
	var once sync.Once
	s, err := controller.New(cp.Config(), controller.Options{
		Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		AfterPass: func(st controller.PassStats) {
			if st.Err == nil {
				once.Do(func() { close(passed) })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-passed:
	case err := <-done:
		t.Fatalf("scheduler stopped before a pass: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no scheduling pass within 60s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("scheduler: %v", err)
	}
}
