package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"babelfish.dev/babelfish/scheduler/dashboard"
)

// staticSource answers the same figures every time, or an error per
// section.
type staticSource struct {
	nodes    []dashboard.Node
	jobs     []dashboard.Job
	releases []dashboard.Release
	serving  dashboard.Serving
	errs     map[string]error
	calls    atomic.Int64
}

func (s *staticSource) GPUs(context.Context) ([]dashboard.Node, error) {
	s.calls.Add(1)
	return s.nodes, s.errs["gpus"]
}

func (s *staticSource) Jobs(context.Context) ([]dashboard.Job, error) {
	s.calls.Add(1)
	return s.jobs, s.errs["jobs"]
}

func (s *staticSource) Releases(context.Context) ([]dashboard.Release, error) {
	s.calls.Add(1)
	return s.releases, s.errs["releases"]
}

func (s *staticSource) Serving(ctx context.Context) (dashboard.Serving, error) {
	s.calls.Add(1)
	if err := s.errs["serving-block"]; err != nil {
		<-ctx.Done()
		return dashboard.Serving{}, ctx.Err()
	}
	return s.serving, s.errs["serving"]
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ptr[T any](v T) *T { return &v }

func TestNewRejectsBadOptions(t *testing.T) {
	src := &staticSource{}
	tests := []struct {
		name string
		src  dashboard.Source
		opts []dashboard.Option
		want string
	}{
		{"nil source", nil, nil, "source is nil"},
		{"poll too fast", src, []dashboard.Option{dashboard.WithPollInterval(time.Millisecond)}, "poll interval 1ms: must be in 100ms..10m0s"},
		{"poll too slow", src, []dashboard.Option{dashboard.WithPollInterval(time.Hour)}, "poll interval 1h0m0s"},
		{"zero timeout", src, []dashboard.Option{dashboard.WithTimeout(0)}, "timeout 0s: must be > 0"},
		{"empty title", src, []dashboard.Option{dashboard.WithTitle("")}, "title is 0 bytes: must be 1..200"},
		{"long title", src, []dashboard.Option{dashboard.WithTitle(strings.Repeat("x", 201))}, "title is 201 bytes"},
		{"nil logger", src, []dashboard.Option{dashboard.WithLogger(nil)}, "logger is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := dashboard.New(tt.src, tt.opts...)
			if err == nil {
				t.Fatalf("New succeeded (%v); want error %q", h, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestHandler: routes, headers, and the JSON the page polls, with one
// failing and one hanging section that blank only themselves.
func TestHandler(t *testing.T) {
	src := &staticSource{
		nodes: []dashboard.Node{{Name: "n1", GPUs: []dashboard.GPU{{Index: 0, UtilPct: ptr(42.0), Healthy: true}, {Index: 1, Healthy: false, Reason: "XID 79"}}}},
		jobs:  []dashboard.Job{{Name: "j", Phase: "Running", Workers: 2, GPUsPerWorker: 4}},
		errs: map[string]error{
			"releases":      errors.New("object store unreachable"),
			"serving-block": errors.New("hangs"),
		},
	}
	h, err := dashboard.New(src, dashboard.WithTitle("lab"), dashboard.WithTimeout(200*time.Millisecond), dashboard.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	routes := []struct {
		method, path string
		code         int
		ctype        string
		body         string
	}{
		{"GET", "/", 200, "text/html", `<script src="app.js"`},
		{"GET", "/app.js", 200, "javascript", "api/state"},
		{"GET", "/app.css", 200, "text/css", ".gpu"},
		{"GET", "/api/state", 200, "application/json", `"title":"lab"`},
		{"GET", "/index.html", 404, "", ""}, // only ./ serves the page
		{"GET", "/nope", 404, "", ""},
		{"POST", "/api/state", 405, "", ""},
	}
	for _, r := range routes {
		resp, body := get(r.method, r.path)
		if resp.StatusCode != r.code {
			t.Errorf("%s %s: status %d; want %d", r.method, r.path, resp.StatusCode, r.code)
			continue
		}
		if !strings.Contains(resp.Header.Get("Content-Type"), r.ctype) {
			t.Errorf("%s %s: Content-Type %q; want %q", r.method, r.path, resp.Header.Get("Content-Type"), r.ctype)
		}
		if !strings.Contains(body, r.body) {
			t.Errorf("%s %s: body lacks %q", r.method, r.path, r.body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s %s: Content-Security-Policy %q", r.method, r.path, csp)
		}
	}

	began := time.Now()
	_, body := get("GET", "/api/state")
	took := time.Since(began)
	var st dashboard.State
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("state: %v\n%s", err, body)
	}
	if took > 2*time.Second {
		t.Errorf("state took %v although the hanging section has a 200ms timeout", took)
	}
	if len(st.Nodes) != 1 || len(st.Nodes[0].GPUs) != 2 || *st.Nodes[0].GPUs[0].UtilPct != 42 || st.Nodes[0].GPUs[1].Reason != "XID 79" {
		t.Errorf("nodes = %+v", st.Nodes)
	}
	if len(st.Jobs) != 1 || st.Jobs[0].Phase != "Running" {
		t.Errorf("jobs = %+v", st.Jobs)
	}
	if st.Releases == nil || len(st.Releases) != 0 {
		t.Errorf("releases = %#v; want empty (section failed)", st.Releases)
	}
	if st.Serving != nil {
		t.Errorf("serving = %+v; want null (section timed out)", st.Serving)
	}
	if !strings.Contains(st.Errors["releases"], "object store unreachable") || !strings.Contains(st.Errors["serving"], "deadline exceeded") {
		t.Errorf("errors = %v", st.Errors)
	}
	if _, ok := st.Errors["gpus"]; ok {
		t.Errorf("errors = %v: gpus did not fail", st.Errors)
	}
	if st.PollMillis != 2000 {
		t.Errorf("pollMillis = %d; want 2000", st.PollMillis)
	}

	// Mounted under a prefix, as the control plane and `up` do.
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h))
	pre := httptest.NewServer(mux)
	defer pre.Close()
	for _, p := range []string{"/dashboard/", "/dashboard/app.js", "/dashboard/api/state"} {
		resp, err := pre.Client().Get(pre.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s under a prefix: %d", p, resp.StatusCode)
		}
	}
}

// TestCollectIsConcurrent: a slow section does not delay the others by
// more than its own time.
func TestCollectIsConcurrent(t *testing.T) {
	slow := &slowSource{d: 300 * time.Millisecond}
	h, err := dashboard.New(slow, dashboard.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	st := h.Collect(t.Context())
	took := time.Since(began)
	if len(st.Errors) != 0 {
		t.Fatalf("errors %v", st.Errors)
	}
	// Four sections of 300ms each: serially 1.2s.
	if took > 900*time.Millisecond {
		t.Errorf("Collect took %v; want about 300ms (sections concurrently)", took)
	}
	if math.Abs(st.Serving.QPS-1) > 0 {
		t.Errorf("serving %+v", st.Serving)
	}
}

type slowSource struct{ d time.Duration }

func (s *slowSource) wait(ctx context.Context) error {
	select {
	case <-time.After(s.d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowSource) GPUs(ctx context.Context) ([]dashboard.Node, error) { return nil, s.wait(ctx) }
func (s *slowSource) Jobs(ctx context.Context) ([]dashboard.Job, error)  { return nil, s.wait(ctx) }
func (s *slowSource) Releases(ctx context.Context) ([]dashboard.Release, error) {
	return nil, s.wait(ctx)
}
func (s *slowSource) Serving(ctx context.Context) (dashboard.Serving, error) {
	return dashboard.Serving{QPS: 1}, s.wait(ctx)
}
