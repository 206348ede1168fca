package serving

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/serving/batcher"
)

// A client's deadline reaches the model: the cancelled request's batch
// stops, so the next request does not wait for it.
func TestDeadlineReachesModel(t *testing.T) {
	st := newStore(t)
	promote(t, st, "s2ut", tinyModel(t, 4, 4096), 1)
	lim := testLimits()
	lim.MaxOutputSeconds = 10
	ts := startServer(t, st, "s2ut", true, WithLimits(lim), WithBatching(batcher.Config{MaxBatch: 1, MaxQueue: 8, Instances: 1}))
	req := &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wavOf(t, speech(16000, 0.5, 3))}, TargetLanguage: "de"}
	full, err := ts.client.Translate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	compute := time.Duration(full.Timing.ComputeSeconds * float64(time.Second))
	if compute < 40*time.Millisecond {
		t.Fatalf("one request computes in %v: too fast to tell a cancelled batch from a finished one", compute)
	}
	// A deadline a quarter of the way in: a batch that kept computing
	// would hold the next request for about three quarters of compute.
	deadline := compute / 4
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	t0 := time.Now()
	_, err = ts.client.Translate(ctx, req)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("short deadline: %v", err)
	}
	next, err := ts.client.Translate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	queued := time.Duration(next.Timing.QueueSeconds * float64(time.Second))
	t.Logf("full compute %v; after a %v deadline the next request queued %v (started %v after the cancelled one)", compute, deadline, queued, time.Since(t0))
	if queued > compute/2 {
		t.Fatalf("next request queued %v behind a cancelled one: the model kept computing (a full batch takes %v)", queued, compute)
	}
}

// A release that fails verification never serves: the old one stays.
func TestCorruptReleaseKeepsServing(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	rel1 := promote(t, st, "s2ut", tinyModel(t, 3, 2), 1)
	ts := startServer(t, st, "s2ut", true)

	// Release 2 names release 1's weights with a wrong checksum; current
	// is flipped to it by hand, as a buggy promoter might.
	bad := rel1
	bad.Number = 2
	bad.ModelSHA256 = strings.Repeat("0", 64)
	b, _ := json.Marshal(bad)
	if _, err := st.Put(ctx, "models/s2ut/releases/2.json", b); err != nil {
		t.Fatal(err)
	}
	cur, _ := json.Marshal(registry.Current{Format: registry.Format, Release: 2, Previous: 1, Updated: time.Now(), Reason: "set"})
	if _, err := st.Put(ctx, "models/s2ut/current", cur); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(scrape(t, ts), `babelfish_serving_release_loads_total{result="failed"}`) {
		if time.Now().After(deadline) {
			t.Fatal("the bad release was never tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := ts.client.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wavOf(t, speech(16000, 0.5, 1))}, TargetLanguage: "fr"})
	if err != nil || resp.ModelVersion != rel1.Name() {
		t.Fatalf("after a corrupt release: %v, %v; want answers from %s", resp.GetModelVersion(), err, rel1.Name())
	}
	h, err := healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	// A good promotion afterwards serves.
	rel3 := promote(t, st, "s2ut", tinyModel(t, 4, 2), 3)
	for ts.Release() != rel3.Name() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never served", rel3.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A pinned release is served whatever current says.
func TestPinnedRelease(t *testing.T) {
	st := newStore(t)
	rel1 := promote(t, st, "s2ut", tinyModel(t, 3, 2), 1)
	promote(t, st, "s2ut", tinyModel(t, 4, 2), 2)
	ts := startServer(t, st, "s2ut", true, WithRelease(1))
	time.Sleep(200 * time.Millisecond)
	if ts.Release() != rel1.Name() {
		t.Fatalf("serving %s, pinned %s", ts.Release(), rel1.Name())
	}
}

func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	ts.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}
