package serving

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, on its own registry, named
// after Triton's nv_inference_* breakdown.
type metrics struct {
	reg *prometheus.Registry

	success  *prometheus.CounterVec   // release, method
	failure  *prometheus.CounterVec   // release, method, code
	rejected *prometheus.CounterVec   // reason
	rejectIn prometheus.Histogram     // handler time of a shed request
	count    *prometheus.CounterVec   // release: inputs run
	execs    *prometheus.CounterVec   // release: batches run
	request  *prometheus.HistogramVec // release, method: server time
	queue    *prometheus.HistogramVec // release
	compute  *prometheus.HistogramVec // release
	batch    *prometheus.HistogramVec // release
	depth    prometheus.GaugeFunc
	release  *prometheus.GaugeVec // release: 1 for the one serving
	swaps    *prometheus.CounterVec
	swapSecs prometheus.Histogram
}

func newMetrics(queueDepth func() float64) *metrics {
	const ns, sub = "babelfish", "serving"
	lat := prometheus.ExponentialBuckets(0.0005, 2, 18) // 0.5 ms .. 65 s
	m := &metrics{
		reg: prometheus.NewRegistry(),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "request_success_total",
			Help: "Requests answered successfully (Triton nv_inference_request_success)."}, []string{"release", "method"}),
		failure: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "request_failure_total",
			Help: "Requests answered with an error, by gRPC code (Triton nv_inference_request_failure)."}, []string{"release", "method", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_total",
			Help: "Requests shed before queueing, by reason (queue_full)."}, []string{"reason"}),
		rejectIn: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rejection_duration_seconds",
			Help: "Server time to shed a request with RESOURCE_EXHAUSTED.", Buckets: prometheus.ExponentialBuckets(0.0000625, 2, 12)}),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "inference_count_total",
			Help: "Inputs run through the model (Triton nv_inference_count)."}, []string{"release"}),
		execs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "exec_count_total",
			Help: "Batches run (Triton nv_inference_exec_count); inference_count/exec_count is the mean batch size."}, []string{"release"}),
		request: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help: "Server time per request, decode to response (Triton nv_inference_request_duration).", Buckets: lat}, []string{"release", "method"}),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "queue_duration_seconds",
			Help: "Time a request waited in the batcher's queue (Triton nv_inference_queue_duration).", Buckets: lat}, []string{"release"}),
		compute: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "compute_duration_seconds",
			Help: "Model time of the batch a request ran in (Triton nv_inference_compute_infer_duration).", Buckets: lat}, []string{"release"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_size",
			Help: "Requests per executed batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}, []string{"release"}),
		depth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_depth",
			Help: "Requests waiting in the current release's queue."}, queueDepth),
		release: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "release_info",
			Help: "1 for the release serving new requests."}, []string{"release"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "release_loads_total",
			Help: "Release loads, by result (swapped, failed)."}, []string{"result"}),
		swapSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "swap_duration_seconds",
			Help: "Time from seeing a new current to serving it: load, verify, warm up, swap.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	m.reg.MustRegister(m.success, m.failure, m.rejected, m.rejectIn, m.count, m.execs, m.request, m.queue, m.compute, m.batch,
		m.depth, m.release, m.swaps, m.swapSecs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
