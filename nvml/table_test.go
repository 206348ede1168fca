package nvml_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/nvml/inventory"
)

// TestHandlerAndScrape serves an agent over HTTP and reads it back as
// `babelfish gpus --agent` does.
func TestHandlerAndScrape(t *testing.T) {
	r := newRig(t, "dgxa100")
	r.run(t)
	inject(t, func() error { return r.fake.InjectXID(4, 48) })
	eventually(t, "gpu 4 unhealthy", func() bool { return !gpuByIndex(t, r.agent, 4).Healthy })

	h, err := r.agent.Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	for _, c := range []struct {
		path, contains string
		status         int
	}{
		{"/metrics", `DCGM_FI_DEV_GPU_UTIL{Hostname="node-a"`, 200},
		{"/metrics", `babelfish_gpu_xid_errors_total{`, 200},
		{"/healthz", "ok", 200},
		{"/inventory", `"node": "node-a"`, 200},
		{"/nope", "", 404},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(b.String(), c.contains) {
			t.Errorf("GET %s: %d, body lacks %q", c.path, resp.StatusCode, c.contains)
		}
		if c.path == "/inventory" {
			var inv inventory.Inventory
			if err := json.Unmarshal(b.Bytes(), &inv); err != nil || inv.Validate() != nil || inv.HealthyCount() != 7 {
				t.Errorf("/inventory: %v %v healthy %d", err, inv.Validate(), inv.HealthyCount())
			}
		}
	}

	rows, err := nvml.ScrapeAgent(t.Context(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	for i, row := range rows {
		rd, _ := r.fake.Reading(i, r.agent.LastSample())
		if row.Index != i || row.Node != "node-a" || row.UtilPct == nil || *row.UtilPct != float64(rd.UtilGPU) ||
			row.MemTotalMiB == nil || *row.MemTotalMiB != 40960 || row.TempC == nil || row.Healthy == nil || *row.Healthy != (i != 4) {
			t.Errorf("row %d: %+v", i, row)
		}
	}
	if !strings.Contains(rows[4].Reason, "xid 48") {
		t.Errorf("row 4 reason %q, want the xid", rows[4].Reason)
	}
	var buf bytes.Buffer
	if err := nvml.WriteTable(&buf, rows, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "UNHEALTHY (xid 48 (double-bit ECC error))") {
		t.Errorf("table:\n%s", buf.String())
	}

	if _, err := nvml.ScrapeAgent(t.Context(), srv.Client(), "node-a:9400"); err == nil || !strings.Contains(err.Error(), "want a URL") {
		t.Errorf("bad address: %v", err)
	}
}

// TestHealthzStale: /healthz fails once sampling stops.
func TestHealthzStale(t *testing.T) {
	r := newRig(t, "dgxa100")
	h, err := r.agent.Handler()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		advance time.Duration
		status  int
	}{{0, 200}, {time.Minute, 503}} {
		r.clk.Add(c.advance)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != c.status {
			t.Errorf("after %v without a sample: %d, want %d (%s)", c.advance, rec.Code, c.status, rec.Body)
		}
	}
}

// TestScrapeDCGMExporter: the table also reads a dcgm-exporter, whose names
// the agent shares.
func TestScrapeDCGMExporter(t *testing.T) {
	const body = `# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x",device="nvidia0",modelName="NVIDIA A10",Hostname="n1",container="c",namespace="ns",pod="p"} 42
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-x",device="nvidia0",modelName="NVIDIA A10",Hostname="n1",container="c",namespace="ns",pod="p"} 1000
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-x",device="nvidia0",modelName="NVIDIA A10",Hostname="n1",container="c",namespace="ns",pod="p"} 22000
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	rows, err := nvml.ScrapeAgent(t.Context(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || *rows[0].UtilPct != 42 || *rows[0].MemTotalMiB != 23000 || rows[0].Healthy != nil ||
		len(rows[0].Pods) != 1 || rows[0].Pods[0] != "ns/p" {
		t.Fatalf("rows %+v", rows)
	}
}
