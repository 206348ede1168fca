package trainer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a rank's Prometheus series.
type Metrics struct {
	Step             prometheus.Gauge
	TotalSteps       prometheus.Gauge
	Loss             prometheus.Gauge
	TokenAccuracy    prometheus.Gauge
	LearningRate     prometheus.Gauge
	GradNorm         prometheus.Gauge
	StepsPerSecond   prometheus.Gauge
	SamplesPerSecond prometheus.Gauge
	// ExamplesPerSecond counts translation pairs: samples that yield one.
	ExamplesPerSecond prometheus.Gauge
	ETASeconds        prometheus.Gauge
	Samples           prometheus.Counter
	Examples          prometheus.Counter
	StepSeconds       *prometheus.HistogramVec // by part: data, compute, allreduce, optimizer
	Checkpoints       prometheus.Counter
	CheckpointSecs    prometheus.Histogram
}

// NewMetrics makes the series and registers them with reg (none when reg
// is nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "babelfish", Subsystem: "trainer", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "babelfish", Subsystem: "trainer", Name: name, Help: help})
	}
	m := &Metrics{
		Step:              g("step", "Optimizer steps taken by the job."),
		TotalSteps:        g("total_steps", "Steps the job will take (set from measured speed under a time budget)."),
		Loss:              g("loss", "Mean per-example loss of the last step, in nats."),
		TokenAccuracy:     g("token_accuracy", "Teacher-forced unit accuracy of the last step."),
		LearningRate:      g("learning_rate", "Learning rate of the last step."),
		GradNorm:          g("grad_norm", "Global gradient norm of the last step, before clipping."),
		StepsPerSecond:    g("steps_per_second", "Recent optimizer steps per second."),
		SamplesPerSecond:  g("samples_per_second", "Recent global samples per second."),
		ExamplesPerSecond: g("examples_per_second", "Recent global translation pairs trained on per second."),
		ETASeconds:        g("eta_seconds", "Estimated seconds until the last step."),
		Samples:           c("samples_total", "Samples this rank read."),
		Examples:          c("examples_total", "Translation pairs this rank trained on."),
		StepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "babelfish", Subsystem: "trainer", Name: "step_part_seconds",
			Help: "Time per step spent in each part.", Buckets: prometheus.ExponentialBuckets(1e-4, 4, 10)}, []string{"part"}),
		Checkpoints: c("checkpoints_total", "Checkpoints this rank committed."),
		CheckpointSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "babelfish", Subsystem: "trainer", Name: "checkpoint_seconds",
			Help: "Time to write one checkpoint.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.Step, m.TotalSteps, m.Loss, m.TokenAccuracy, m.LearningRate, m.GradNorm, m.StepsPerSecond,
			m.SamplesPerSecond, m.ExamplesPerSecond, m.ETASeconds, m.Samples, m.Examples, m.StepSeconds, m.Checkpoints, m.CheckpointSecs} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
