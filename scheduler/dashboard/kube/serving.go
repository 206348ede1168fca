package kube

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/internal/promscrape"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// The serving tier's series (package serving).
const (
	metricSuccess = "babelfish_serving_request_success_total"    // {release, method}
	metricFailure = "babelfish_serving_request_failure_total"    // {release, method, code}
	metricLatency = "babelfish_serving_request_duration_seconds" // histogram {release, method}
	metricRelease = "babelfish_serving_release_info"             // 1 {release="<model>/releases/<n>"}
)

// servingSample is one serving pod's counters at one scrape, summed over
// releases, methods and codes.
type servingSample struct {
	at         time.Time
	ok, failed float64
	// buckets: upper bound -> cumulative count of the latency histogram.
	buckets map[float64]float64
}

func sampleOf(fams families, at time.Time) servingSample {
	s := servingSample{at: at, buckets: map[float64]float64{}}
	for _, m := range fams[metricSuccess].GetMetric() {
		s.ok += promscrape.Value(m)
	}
	for _, m := range fams[metricFailure].GetMetric() {
		s.failed += promscrape.Value(m)
	}
	for _, m := range fams[metricLatency].GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				s.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		// +Inf is the sample count, whether the parser lists it or not.
		s.buckets[math.Inf(1)] += float64(h.GetSampleCount())
	}
	return s
}

// sub is s - base, as Prometheus' increase() takes it: a counter that went
// down was reset (the pod restarted), so all of s counts.
func (s servingSample) sub(base servingSample) servingSample {
	if s.ok+s.failed < base.ok+base.failed || s.buckets[math.Inf(1)] < base.buckets[math.Inf(1)] {
		return s
	}
	d := servingSample{at: s.at, ok: s.ok - base.ok, failed: s.failed - base.failed, buckets: map[float64]float64{}}
	for le, n := range s.buckets {
		d.buckets[le] = max(0, n-base.buckets[le])
	}
	return d
}

// quantile is histogram_quantile(q, buckets): linear within the bucket the
// rank falls in; the highest finite bound when it falls in +Inf; false
// with no observation.
func quantile(q float64, buckets map[float64]float64) (float64, bool) {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 || !math.IsInf(les[len(les)-1], 1) {
		return 0, false
	}
	total := buckets[les[len(les)-1]]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	prevLE, prevN := 0.0, 0.0
	for i, le := range les {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				if i == 0 {
					return 0, false
				}
				return les[i-1], true
			}
			if n == prevN {
				return le, true
			}
			return prevLE + (le-prevLE)*(rank-prevN)/(n-prevN), true
		}
		prevLE, prevN = le, n
	}
	return les[len(les)-1], true
}

// parseReleaseLabel splits "<model>/releases/<n>".
func parseReleaseLabel(s string) (string, int64, bool) {
	model, num, ok := strings.Cut(s, "/releases/")
	if !ok || model == "" {
		return "", 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1 {
		return "", 0, false
	}
	return model, n, true
}

// Serving returns the serving tier's load: ready replicas, and QPS, error
// ratio and p99 latency over the rate window. The first poll has no
// baseline yet: it reports the replicas and release, no load.
func (s *Source) Serving(ctx context.Context) (dashboard.Serving, error) {
	pods, err := s.cs.CoreV1().Pods(s.cfg.servingNS).List(ctx, metav1.ListOptions{LabelSelector: s.cfg.servingSelector})
	if err != nil {
		return dashboard.Serving{}, fmt.Errorf("list serving pods: %w", err)
	}
	var (
		out     dashboard.Serving
		present = map[string]bool{}
		mu      sync.Mutex
		wg      sync.WaitGroup
		tried   int
		errs    []error
		answers int
		delta   = servingSample{buckets: map[float64]float64{}}
		qps     float64
	)
	for i := range pods.Items {
		p := &pods.Items[i]
		present[string(p.UID)] = true
		if !podUsable(p) {
			continue
		}
		if podReady(p) {
			out.Replicas++
		}
		url := podMetricsURL(p, s.cfg.servingPort)
		if url == "" {
			continue
		}
		tried++
		wg.Go(func() {
			fams, err := scrape(ctx, s.cfg.client, url, s.cfg.scrapeTimeout)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err))
				mu.Unlock()
				return
			}
			cur := sampleOf(fams, s.cfg.now())
			base, ok := s.live.addServing(string(p.UID), cur, s.cfg.rateWindow)
			mu.Lock()
			defer mu.Unlock()
			answers++
			for _, m := range fams[metricRelease].GetMetric() {
				if promscrape.Value(m) != 1 {
					continue
				}
				if model, n, ok := parseReleaseLabel(promscrape.Labels(m)["release"]); ok && n > out.Release {
					out.Model, out.Release = model, n
				}
			}
			if !ok {
				return
			}
			d := cur.sub(base)
			if dt := cur.at.Sub(base.at).Seconds(); dt > 0 {
				qps += (d.ok + d.failed) / dt
			}
			delta.ok += d.ok
			delta.failed += d.failed
			for le, n := range d.buckets {
				delta.buckets[le] += n
			}
		})
	}
	wg.Wait()
	s.live.forgetServing(present)
	if tried > 0 && answers == 0 {
		return out, fmt.Errorf("no serving pod answered its /metrics (%d tried): %w", tried, errors.Join(errs...))
	}
	out.QPS = qps
	if n := delta.ok + delta.failed; n > 0 {
		out.ErrorRatio = delta.failed / n
	}
	if p99, ok := quantile(0.99, delta.buckets); ok {
		out.P99Seconds = &p99
	}
	return out, nil
}
