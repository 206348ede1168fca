package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the scheduling loop, registered on Options.Registerer.
type metrics struct {
	passes      prometheus.Counter
	passSeconds prometheus.Histogram
	podsBound   prometheus.Counter
	admitted    prometheus.Counter
	preempted   prometheus.Counter
	restarted   prometheus.Counter
	bindFailed  prometheus.Counter
	pending     prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "babelfish", "scheduler"
	m := &metrics{
		passes:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "passes_total", Help: "Scheduling passes run."}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "pass_seconds", Help: "Duration of a scheduling pass.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		podsBound:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "pods_bound_total", Help: "Worker pods bound to a node."}),
		admitted:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gangs_admitted_total", Help: "Gangs placed and bound."}),
		preempted:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "preemptions_total", Help: "Jobs preempted."}),
		restarted:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gang_restarts_total", Help: "Gangs torn down after a rank failed."}),
		bindFailed:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gang_bind_failures_total", Help: "Gangs whose pods could not all be created and bound, and were deleted."}),
		pending:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_jobs", Help: "Jobs waiting for a placement after the last pass."}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.passSeconds, m.podsBound, m.admitted, m.preempted, m.restarted, m.bindFailed, m.pending} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("scheduler metrics: %w", err)
		}
	}
	return m, nil
}
