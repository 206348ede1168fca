package dashboard_test

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"babelfish.dev/babelfish/internal/browser"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// agentSource is the source `babelfish up --fake-gpus=dgxa100` gives the
// dashboard: GPUs scraped from a real GPU agent's /metrics (go-nvml's
// simulated DGX A100, whose readings move with time), one job running and
// one queued, two releases, and a serving load that varies.
type agentSource struct {
	agentURL string
	client   *http.Client
	start    time.Time
}

func (s *agentSource) GPUs(ctx context.Context) ([]dashboard.Node, error) {
	rows, err := nvml.ScrapeAgent(ctx, s.client, s.agentURL)
	if err != nil {
		return nil, err
	}
	var nodes []dashboard.Node
	for _, r := range rows {
		if len(nodes) == 0 || nodes[len(nodes)-1].Name != r.Node {
			nodes = append(nodes, dashboard.Node{Name: r.Node})
		}
		n := &nodes[len(nodes)-1]
		n.GPUs = append(n.GPUs, dashboard.GPU{
			Index: r.Index, UUID: r.UUID, Model: r.Model, UtilPct: r.UtilPct, MemUsedMiB: r.MemUsedMiB,
			MemTotalMiB: r.MemTotalMiB, TempC: r.TempC, PowerW: r.PowerW,
			Healthy: r.Healthy == nil || *r.Healthy, Reason: r.Reason, Pods: r.Pods,
		})
	}
	return nodes, nil
}

func (s *agentSource) Jobs(context.Context) ([]dashboard.Job, error) {
	el := time.Since(s.start)
	step := int64(el / (50 * time.Millisecond))
	loss := 5.2 * math.Exp(-float64(step)/400)
	return []dashboard.Job{
		{Namespace: "research", Name: "s2st-de-fr", Queue: "research", Phase: "Running", Priority: 10, Workers: 2, GPUsPerWorker: 4,
			Step: step, Steps: 20000, Loss: &loss, Nodes: []string{"dgx-a"}, Created: s.start},
		{Namespace: "research", Name: "s2st-100-langs", Queue: "research", Phase: "Pending", Priority: 5, Workers: 4, GPUsPerWorker: 8,
			Steps: 200000, Message: "waiting for 32 GPUs: 0 free", Created: s.start},
	}, nil
}

func (s *agentSource) Releases(context.Context) ([]dashboard.Release, error) {
	return []dashboard.Release{
		{Model: "s2st", Release: 2, Current: true, Source: "checkpoints/s2st-de-fr/1200", MetricName: "concept acc", Metric: ptr(0.71), Created: s.start.Add(-20 * time.Minute)},
		{Model: "s2st", Release: 1, Source: "checkpoints/s2st-de-fr/400", MetricName: "concept acc", Metric: ptr(0.42), Created: s.start.Add(-3 * time.Hour)},
	}, nil
}

func (s *agentSource) Serving(context.Context) (dashboard.Serving, error) {
	x := time.Since(s.start).Seconds()
	return dashboard.Serving{QPS: 40 + 15*math.Sin(x), P99Seconds: ptr(0.180 + 0.04*math.Cos(x)), ErrorRatio: 0.001, Replicas: 2, Release: 2, Model: "s2st"}, nil
}

// TestDashboardInChromium loads the page in real headless Chromium against
// a GPU agent on a simulated DGX A100: no console error, 8 GPUs whose
// readings change while the page polls, the running job with its progress
// moving, the releases and serving figures; a screenshot is kept.
func TestDashboardInChromium(t *testing.T) {
	if _, err := browser.Find(); err != nil {
		t.Fatalf("headless Chromium is needed for the dashboard test: %v", err)
	}

	fake, err := nvml.NewFake("dgxa100")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nvml.New(t.Context(), nvml.Config{NVML: fake.Interface(), Hostname: "dgx-a", Interval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(t.Context())
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		_ = agent.Run(actx)
	}()
	defer func() {
		stopAgent()
		<-agentDone
		_ = agent.Close()
	}()
	ah, err := agent.Handler()
	if err != nil {
		t.Fatal(err)
	}
	agentSrv := httptest.NewServer(ah)
	defer agentSrv.Close()

	src := &agentSource{agentURL: agentSrv.URL, client: agentSrv.Client(), start: time.Now()}
	h, err := dashboard.New(src, dashboard.WithTitle("Babelfish (dgxa100, simulated)"), dashboard.WithPollInterval(250*time.Millisecond), dashboard.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	began := time.Now()
	page, err := browser.Open(t.Context(), srv.URL+"/", browser.WithWindowSize(1400, 1100), browser.WithTimeout(90*time.Second), browser.WithLogf(t.Logf))
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	if err := page.WaitVisible(`#gpus .gpu`); err != nil {
		t.Fatalf("load the page in %s: %v", page.Exe, err)
	}
	t.Logf("page showed its first GPU %v after navigation", time.Since(began).Round(time.Millisecond))

	type view struct {
		GPUs     []string `json:"gpus"`
		Nodes    []string `json:"nodes"`
		Job      string   `json:"job"`
		Progress string   `json:"progress"`
		Pending  string   `json:"pending"`
		Release  string   `json:"release"`
		QPS      string   `json:"qps"`
		P99      string   `json:"p99"`
		Updates  string   `json:"updates"`
		Title    string   `json:"title"`
	}
	const read = `(() => {
		const q = (s) => document.querySelector(s);
		const txt = (s) => (q(s) ? q(s).textContent : "");
		return {
			gpus: Array.from(document.querySelectorAll("#gpus .gpu")).map((g) =>
				[g.dataset.node, g.dataset.index, g.querySelector(".util").textContent, g.querySelector(".mem").textContent,
				 g.querySelector(".temp").textContent, g.querySelector(".power").textContent, g.querySelector(".health").textContent].join("|")),
			nodes: Array.from(document.querySelectorAll("#gpus .node")).map((n) => n.dataset.node),
			job: txt('tr[data-job="research/s2st-de-fr"] .phase'),
			progress: txt('tr[data-job="research/s2st-de-fr"] .progress'),
			pending: txt('tr[data-job="research/s2st-100-langs"] .phase'),
			release: txt('tr[data-release="s2st/2"] .current'),
			qps: txt('#serving [data-key="qps"]'),
			p99: txt('#serving [data-key="p99"]'),
			updates: document.body.dataset.updates || "0",
			title: document.title,
		};
	})()`
	var first view
	if err := page.Eval(read, &first); err != nil {
		t.Fatal(err)
	}
	if len(first.GPUs) != 8 {
		t.Fatalf("page shows %d GPUs; want the DGX A100's 8: %v", len(first.GPUs), first.GPUs)
	}
	if !slices.Equal(first.Nodes, []string{"dgx-a"}) {
		t.Errorf("nodes %v; want [dgx-a]", first.Nodes)
	}
	for _, g := range first.GPUs {
		f := strings.Split(g, "|")
		if f[2] == "–" || !strings.HasSuffix(f[2], "%") || f[4] == "– °C" || f[6] != "healthy" || !strings.Contains(f[3], "/ 40.0") && !strings.Contains(f[3], "/ 80.0") {
			t.Errorf("GPU tile %q: want utilization, memory of an A100, temperature and health", g)
		}
	}
	if first.Job != "Running" || first.Pending != "Pending" {
		t.Errorf("jobs: running job phase %q, queued job phase %q", first.Job, first.Pending)
	}
	if first.Release != "2 (current)" {
		t.Errorf("current release cell %q", first.Release)
	}
	if first.QPS == "" || first.QPS == "–" || !strings.HasSuffix(first.P99, "ms") {
		t.Errorf("serving qps %q p99 %q", first.QPS, first.P99)
	}

	// Values change over time, as the page polls.
	var later view
	deadline := time.Now().Add(20 * time.Second)
	changed := 0
	for {
		time.Sleep(500 * time.Millisecond)
		if err := page.Eval(read, &later); err != nil {
			t.Fatal(err)
		}
		changed = 0
		for i := range min(len(first.GPUs), len(later.GPUs)) {
			if first.GPUs[i] != later.GPUs[i] {
				changed++
			}
		}
		if (changed >= 4 && later.Progress != first.Progress && later.QPS != first.QPS) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after %s page updates: %d of 8 GPU tiles changed; job progress %q -> %q; QPS %s -> %s", later.Updates, changed, first.Progress, later.Progress, first.QPS, later.QPS)
	t.Logf("GPU 0: %s -> %s", first.GPUs[0], later.GPUs[0])
	if changed < 4 {
		t.Errorf("only %d of 8 GPU tiles changed in 20 s of polling", changed)
	}
	if later.Progress == first.Progress {
		t.Errorf("running job's progress stayed %q", first.Progress)
	}
	if len(later.GPUs) != 8 {
		t.Errorf("page shows %d GPUs after updates", len(later.GPUs))
	}

	shot, err := page.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("screenshot is %v; want at least 800x600", b)
	}
	out := filepath.Join(browser.ArtifactDir(t), "dashboard.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %dx%d (%d bytes): %s", img.Bounds().Dx(), img.Bounds().Dy(), len(shot), out)

	// The listener hears console errors: a probe must come through, and
	// must be the only thing that did.
	if err := page.CheckConsole(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range page.Problems() {
		t.Errorf("browser reported: %s", p)
	}
}
