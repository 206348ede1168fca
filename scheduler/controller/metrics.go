package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// jobPhases are the TrainingJob phases the jobs gauge reports, zeros
// included.
var jobPhases = [...]v1alpha1.TrainingJobPhase{
	v1alpha1.PhasePending, v1alpha1.PhaseAdmitted, v1alpha1.PhaseRunning, v1alpha1.PhaseRestarting,
	v1alpha1.PhasePreempted, v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed,
}

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
	jobs        *prometheus.GaugeVec // queue, phase

	// jobQueues are the queues the jobs gauge has series for; only the
	// loop's goroutine touches it.
	jobQueues map[string]bool
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
		jobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "jobs",
			Help: "TrainingJobs by queue and phase as the last pass left them (queue empty: no queue). Only the leader reports it."},
			[]string{"queue", "phase"}),
		jobQueues: map[string]bool{},
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.passSeconds, m.podsBound, m.admitted, m.preempted, m.restarted, m.bindFailed, m.pending, m.jobs} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("scheduler metrics: %w", err)
		}
	}
	return m, nil
}

// setJobs sets the jobs gauge from the phases a pass left its jobs in.
// Every phase of a queue that has jobs gets a series, zeros included, so a
// phase that empties reads 0 instead of vanishing; a queue whose last job
// is deleted loses its series.
func (m *metrics) setJobs(jobs []*jobState) {
	type qp struct {
		queue string
		phase v1alpha1.TrainingJobPhase
	}
	counts := map[qp]int{}
	queues := map[string]bool{}
	for _, js := range jobs {
		ph := js.next.Phase
		if ph == "" {
			ph = v1alpha1.PhasePending // not yet written: the API shows it as new
		}
		counts[qp{js.job.Spec.Queue, ph}]++
		queues[js.job.Spec.Queue] = true
	}
	for q := range m.jobQueues {
		if !queues[q] {
			m.jobs.DeletePartialMatch(prometheus.Labels{"queue": q})
		}
	}
	for q := range queues {
		for _, ph := range jobPhases {
			m.jobs.WithLabelValues(q, string(ph)).Set(float64(counts[qp{q, ph}]))
		}
	}
	m.jobQueues = queues
}
