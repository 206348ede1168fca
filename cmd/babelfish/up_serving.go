package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"babelfish.dev/babelfish/scheduler/dashboard"
)

// servingStats turns the serving tier's own Prometheus metrics into the
// dashboard's figures: rates and the p99 over the time since the previous
// poll (the dashboard polls every few seconds).
type servingStats struct {
	metrics http.Handler
	release func() string

	mu   sync.Mutex
	prev *servingSample
}

type servingSample struct {
	at      time.Time
	ok, bad float64
	buckets map[float64]float64 // upper bound -> cumulative count
}

func (s *servingStats) sample() (*servingSample, error) {
	rec := httptest.NewRecorder()
	s.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("serving metrics: status %d", rec.Code)
	}
	// The zero TextParser panics on its unset name validation scheme.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		return nil, fmt.Errorf("serving metrics: %w", err)
	}
	sm := &servingSample{at: time.Now(), buckets: map[float64]float64{}}
	sum := func(name string) float64 {
		var t float64
		if f := fams[name]; f != nil {
			for _, m := range f.GetMetric() {
				t += m.GetCounter().GetValue()
			}
		}
		return t
	}
	sm.ok = sum("babelfish_serving_request_success_total")
	sm.bad = sum("babelfish_serving_request_failure_total")
	if f := fams["babelfish_serving_request_duration_seconds"]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
		for _, m := range f.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				sm.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
	}
	return sm, nil
}

// Serving implements the dashboard's serving section.
func (s *servingStats) Serving(context.Context) (dashboard.Serving, error) {
	cur, err := s.sample()
	if err != nil {
		return dashboard.Serving{}, err
	}
	out := dashboard.Serving{Replicas: 1}
	if name := s.release(); name != "" {
		// "<model>/releases/<n>"
		model, n, _ := strings.Cut(name, "/releases/")
		out.Model = model
		out.Release, _ = strconv.ParseInt(n, 10, 64)
	}
	s.mu.Lock()
	prev := s.prev
	s.prev = cur
	s.mu.Unlock()
	if prev == nil {
		return out, nil
	}
	secs := cur.at.Sub(prev.at).Seconds()
	total := (cur.ok + cur.bad) - (prev.ok + prev.bad)
	if secs > 0 {
		out.QPS = total / secs
	}
	if total > 0 {
		out.ErrorRatio = (cur.bad - prev.bad) / total
		if p := quantile(0.99, prev.buckets, cur.buckets); !math.IsNaN(p) {
			out.P99Seconds = &p
		}
	}
	return out, nil
}

// quantile estimates the q-quantile of the requests between two
// cumulative histograms, as Prometheus's histogram_quantile does (linear
// within the bucket).
func quantile(q float64, prev, cur map[float64]float64) float64 {
	bounds := make([]float64, 0, len(cur))
	for b := range cur {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return math.NaN()
	}
	counts := make([]float64, len(bounds))
	for i, b := range bounds {
		counts[i] = cur[b] - prev[b]
	}
	total := counts[len(counts)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range bounds {
		if counts[i] >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			inBucket := counts[i] - below
			if inBucket <= 0 {
				return b
			}
			return lower + (b-lower)*(rank-below)/inBucket
		}
		lower, below = b, counts[i]
	}
	return bounds[len(bounds)-1]
}
