package kube

import (
	"math"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
		ok      bool
	}{
		{"no observation", 0.99, map[float64]float64{0.1: 0, inf: 0}, 0, false},
		{"no +Inf bucket", 0.99, map[float64]float64{0.1: 3}, 0, false},
		{"no bucket", 0.99, map[float64]float64{}, 0, false},
		// 100 in (0, 0.1]: rank 50 is halfway.
		{"first bucket from 0", 0.5, map[float64]float64{0.1: 100, 0.2: 100, inf: 100}, 0.05, true},
		// 50 in (0, 0.1], 50 in (0.1, 0.2]: rank 99 is 49/50 into the second.
		{"interpolates", 0.99, map[float64]float64{0.1: 50, 0.2: 100, inf: 100}, 0.1 + 0.1*49/50, true},
		// The rank falls in +Inf: the highest finite bound, as Prometheus.
		{"in +Inf", 0.99, map[float64]float64{0.1: 50, 0.2: 90, inf: 100}, 0.2, true},
		{"only +Inf", 0.5, map[float64]float64{inf: 10}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := quantile(tc.q, tc.buckets)
			if ok != tc.ok || math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("quantile(%v, %v) = %v, %v; want %v, %v", tc.q, tc.buckets, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSampleSub(t *testing.T) {
	inf := math.Inf(1)
	t0 := time.Unix(1000, 0)
	base := servingSample{at: t0, ok: 100, failed: 2, buckets: map[float64]float64{0.1: 90, inf: 102}}
	cur := servingSample{at: t0.Add(10 * time.Second), ok: 150, failed: 2, buckets: map[float64]float64{0.1: 130, inf: 152}}
	d := cur.sub(base)
	if d.ok != 50 || d.failed != 0 || d.buckets[0.1] != 40 || d.buckets[inf] != 50 {
		t.Errorf("increase %+v; want 50 ok, 0 failed, buckets 40/50", d)
	}
	// The pod restarted: its counters began again, so all of cur counts.
	restarted := servingSample{at: t0.Add(10 * time.Second), ok: 7, buckets: map[float64]float64{0.1: 7, inf: 7}}
	if d := restarted.sub(base); d.ok != 7 || d.buckets[inf] != 7 {
		t.Errorf("increase after a restart %+v; want the new counters", d)
	}
}

func TestParseReleaseLabel(t *testing.T) {
	for _, tc := range []struct {
		in    string
		model string
		n     int64
		ok    bool
	}{
		{"s2st/releases/3", "s2st", 3, true},
		{"a.b-c/releases/12", "a.b-c", 12, true},
		{"s2st/releases/0", "", 0, false},
		{"s2st/releases/x", "", 0, false},
		{"/releases/1", "", 0, false},
		{"s2st", "", 0, false},
	} {
		m, n, ok := parseReleaseLabel(tc.in)
		if m != tc.model || n != tc.n || ok != tc.ok {
			t.Errorf("parseReleaseLabel(%q) = %q %d %v; want %q %d %v", tc.in, m, n, ok, tc.model, tc.n, tc.ok)
		}
	}
}

func TestNewRejects(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		opt  Option
		want string
	}{
		{"bad node selector", WithNodeSelector("a in (b"), "node selector"},
		{"bad agent selector", WithAgentPods("", "!!"), "agent selector"},
		{"agent port", WithPorts(0, 9090), "agent port 0"},
		{"serving port", WithPorts(9400, 70000), "serving port 70000"},
		{"scrape timeout", WithScrapeTimeout(0), "scrape timeout"},
		{"rate window", WithRateWindow(time.Millisecond), "rate window"},
		{"max finished", WithMaxFinished(-1), "max finished jobs -1"},
		{"logger", WithLogger(nil), "logger is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(cfg, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v; want an error naming %q", err, tc.want)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil): no error")
	}
	if _, err := New(cfg); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

func TestServingHistory(t *testing.T) {
	l := newLiveState()
	t0 := time.Unix(1000, 0)
	w := 30 * time.Second
	at := func(s int) servingSample { return servingSample{at: t0.Add(time.Duration(s) * time.Second)} }
	if _, ok := l.addServing("p", at(0), w); ok {
		t.Fatal("first sample has a baseline")
	}
	for _, tc := range []struct {
		now, base int
	}{
		{2, 0}, {10, 0}, {31, 0}, {40, 10}, {100, 40}, {101, 40},
	} {
		b, ok := l.addServing("p", at(tc.now), w)
		if !ok || !b.at.Equal(at(tc.base).at) {
			t.Errorf("at %ds: baseline %v (ok %v); want %ds", tc.now, b.at.Sub(t0), ok, tc.base)
		}
	}
	l.forgetServing(map[string]bool{})
	if _, ok := l.addServing("p", at(200), w); ok {
		t.Error("a forgotten pod kept its history")
	}
}
