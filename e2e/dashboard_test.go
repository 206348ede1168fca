package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/browser"
)

// TestDashboardUp opens the page `babelfish up --fake-gpus=dgxa100` serves
// in real headless Chromium while a job runs: no console error, the DGX
// A100's 8 GPUs with readings that change as the page polls, the job with
// phase Running; the screenshot is kept as an artifact.
func TestDashboardUp(t *testing.T) {
	if _, err := browser.Find(); err != nil {
		t.Fatalf("headless Chromium is needed for the dashboard test: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(s.up.dir, "up.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Dashboard string `json:"dashboard"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Dashboard == "" {
		t.Fatalf("up.json names no dashboard (%v): %s", err, raw)
	}

	defer func() {
		if t.Failed() {
			t.Logf("babelfish up output:\n%s", tail(s.up.out.String(), 6000))
		}
	}()

	// Long enough to stay Running while the page is looked at; cancelled
	// after, so that it costs the suite only these seconds.
	const job = "dashboard"
	submit(t, jobSpec{name: job, steps: 200000, checkpointEvery: 100000, backoffLimit: 0})
	defer func() {
		if out, err := s.up.babelfish(context.Background(), "cancel", job); err != nil {
			t.Errorf("cancel %s: %v\n%s", job, err, out)
		}
		waitJob(t, job, time.Minute, "the cancelled job to stop", func(j *v1alpha1.TrainingJob) bool { return j.Status.Phase.Terminal() })
	}()
	waitJob(t, job, 2*time.Minute, "phase Running", func(j *v1alpha1.TrainingJob) bool {
		return j.Status.Phase == v1alpha1.PhaseRunning
	})

	began := time.Now()
	page, err := browser.Open(t.Context(), st.Dashboard, browser.WithWindowSize(1400, 1100), browser.WithTimeout(2*time.Minute), browser.WithLogf(t.Logf))
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	if err := page.WaitVisible(`#gpus .gpu`); err != nil {
		t.Fatalf("dashboard %s in %s: %v", st.Dashboard, page.Exe, err)
	}
	t.Logf("%s showed its first GPU %v after navigation", st.Dashboard, time.Since(began).Round(time.Millisecond))

	type view struct {
		GPUs    []string `json:"gpus"`
		Phase   string   `json:"phase"`
		Updates string   `json:"updates"`
	}
	const read = `(() => {
		const row = document.querySelector('tr[data-job="` + job + `"] .phase');
		return {
			gpus: Array.from(document.querySelectorAll("#gpus .gpu")).map((g) =>
				[g.dataset.node, g.dataset.index, g.querySelector(".util").textContent, g.querySelector(".mem").textContent,
				 g.querySelector(".temp").textContent, g.querySelector(".power").textContent, g.querySelector(".health").textContent].join("|")),
			phase: row ? row.textContent : "",
			updates: document.body.dataset.updates || "0",
		};
	})()`
	var first view
	if err := page.Eval(read, &first); err != nil {
		t.Fatal(err)
	}
	if len(first.GPUs) != 8 {
		t.Fatalf("page shows %d GPUs; want the DGX A100's 8: %q", len(first.GPUs), first.GPUs)
	}
	for _, g := range first.GPUs {
		f := strings.Split(g, "|")
		if f[6] != "healthy" {
			t.Errorf("GPU tile %q: want healthy", g)
		}
		// Utilization, memory, temperature and power are all live readings.
		for i, what := range map[int]string{2: "utilization", 3: "memory", 4: "temperature", 5: "power"} {
			if strings.Contains(f[i], "–") {
				t.Errorf("GPU tile %q shows no %s", g, what)
			}
		}
	}
	if first.Phase != "Running" {
		t.Errorf("job %s shows phase %q; want Running", job, first.Phase)
	}

	// Readings move as the page polls (every 2 s by default).
	var later view
	changed, at := 0, -1
	for deadline := time.Now().Add(30 * time.Second); changed == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		if err := page.Eval(read, &later); err != nil {
			t.Fatal(err)
		}
		for i := range min(len(first.GPUs), len(later.GPUs)) {
			if first.GPUs[i] != later.GPUs[i] {
				if changed == 0 {
					at = i
				}
				changed++
			}
		}
	}
	t.Logf("after %s page updates: %d of 8 GPU tiles changed; job %s %s", later.Updates, changed, job, later.Phase)
	if changed == 0 {
		t.Errorf("no GPU reading changed in 30 s of polling: %q", first.GPUs)
	} else {
		t.Logf("GPU %d: %s -> %s", at, first.GPUs[at], later.GPUs[at])
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
	out := filepath.Join(browser.ArtifactDir(t), "dashboard-up.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %dx%d (%d bytes): %s", img.Bounds().Dx(), img.Bounds().Dy(), len(shot), out)

	if err := page.CheckConsole(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range page.Problems() {
		t.Errorf("browser reported: %s", p)
	}
}
