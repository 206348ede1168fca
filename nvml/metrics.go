package nvml

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// gpuLabelNames are the labels of every per-GPU series, in dcgm-exporter's
// names. container/namespace/pod are empty when no pod holds the GPU (or
// no pod-resources socket is configured); Prometheus treats an empty label
// as absent.
func gpuLabelNames() []string {
	return []string{"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "container", "namespace", "pod"}
}

// collector turns the latest snapshot into metrics at scrape time: it makes
// no NVML call, so scrapes are cheap and never touch the GPUs.
type collector struct {
	a      *Agent
	defs   [numMetrics]metricDef
	descs  [numMetrics]*prometheus.Desc
	health *prometheus.Desc
	lost   *prometheus.Desc
	faults *prometheus.Desc
	recov  *prometheus.Desc
	xids   *prometheus.Desc
	last   *prometheus.Desc
	island *prometheus.Desc
	pod    *prometheus.Desc
	took   *prometheus.Desc
	at     *prometheus.Desc
	errs   *prometheus.Desc
	podErr *prometheus.Desc
}

// Collector returns the agent's Prometheus collector.
func (a *Agent) Collector() prometheus.Collector {
	c := &collector{a: a, defs: metricDefs()}
	names := gpuLabelNames()
	for i, d := range c.defs {
		c.descs[i] = prometheus.NewDesc(d.name, d.help, names, nil)
	}
	xidLabels := append(append([]string{}, names...), "xid")
	c.health = prometheus.NewDesc("babelfish_gpu_healthy", "1 when the GPU is healthy; critical XIDs, double-bit ECC errors and a lost GPU make it 0 until the recovery probe passes.", names, nil)
	c.lost = prometheus.NewDesc("babelfish_gpu_lost", "1 while NVML answers ERROR_GPU_IS_LOST for the GPU.", names, nil)
	c.faults = prometheus.NewDesc("babelfish_gpu_unhealthy_transitions_total", "Times the GPU went from healthy to unhealthy.", names, nil)
	c.recov = prometheus.NewDesc("babelfish_gpu_recoveries_total", "Times the recovery probe marked the GPU healthy again.", names, nil)
	c.xids = prometheus.NewDesc("babelfish_gpu_xid_errors_total", "XID errors seen since the agent started, by XID code (all of them, not only the last).", xidLabels, nil)
	c.last = prometheus.NewDesc("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered (absent until one is).", names, nil)
	c.island = prometheus.NewDesc("babelfish_gpu_nvlink_island", "NVLink island of the GPU: GPUs with equal values reach each other over NVLink.", names, nil)
	c.pod = prometheus.NewDesc("babelfish_gpu_pod_info", "1 for every container the kubelet gave the GPU (several when it is shared).", []string{"gpu", "UUID", "Hostname", "namespace", "pod", "container"}, nil)
	c.took = prometheus.NewDesc("babelfish_gpu_agent_sample_duration_seconds", "How long the latest sample of all GPUs took.", nil, nil)
	c.at = prometheus.NewDesc("babelfish_gpu_agent_last_sample_timestamp_seconds", "When the latest sample was taken (Unix time).", nil, nil)
	c.errs = prometheus.NewDesc("babelfish_gpu_agent_nvml_errors_total", "NVML calls that failed with an error other than not-supported, by function.", []string{"function"}, nil)
	c.podErr = prometheus.NewDesc("babelfish_gpu_agent_pod_resources_errors_total", "Failed calls to the kubelet's pod-resources API.", nil, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.health, c.lost, c.faults, c.recov, c.xids, c.last, c.island, c.pod, c.took, c.at, c.errs, c.podErr} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.snap.Load()
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	host := c.a.cfg.Hostname
	for i, g := range s.gpus {
		idx := strconv.Itoa(g.Index)
		var ctr, ns, pod string
		if len(g.Pods) > 0 {
			// The first holder (sorted) labels the series; babelfish_gpu_pod_info
			// lists all of them when a GPU is shared.
			ctr, ns, pod = g.Pods[0].Container, g.Pods[0].Namespace, g.Pods[0].Pod
		}
		labels := []string{idx, g.UUID, g.PCIBusID, "nvidia" + idx, g.Model, host, ctr, ns, pod}
		smp := &s.samples[i]
		for m := range numMetrics {
			if v, ok := smp.get(m); ok {
				emit(c.descs[m], c.defs[m].typ, v, labels...)
			}
		}
		emit(c.health, prometheus.GaugeValue, b2f(g.Healthy), labels...)
		emit(c.lost, prometheus.GaugeValue, b2f(g.Lost), labels...)
		emit(c.faults, prometheus.CounterValue, float64(s.health[i].unhealthyTotal), labels...)
		emit(c.recov, prometheus.CounterValue, float64(s.health[i].recoveries), labels...)
		emit(c.island, prometheus.GaugeValue, float64(g.Island), labels...)
		for xid, n := range g.XIDs {
			emit(c.xids, prometheus.CounterValue, float64(n), append(labels[:len(labels):len(labels)], strconv.FormatUint(xid, 10))...)
		}
		if s.health[i].anyXID {
			emit(c.last, prometheus.GaugeValue, float64(g.LastXID), labels...)
		}
		for _, p := range g.Pods {
			emit(c.pod, prometheus.GaugeValue, 1, idx, g.UUID, host, p.Namespace, p.Pod, p.Container)
		}
	}
	emit(c.took, prometheus.GaugeValue, s.took.Seconds())
	emit(c.at, prometheus.GaugeValue, float64(s.at.UnixNano())/1e9)
	for fn, n := range s.nvmlErrs {
		emit(c.errs, prometheus.CounterValue, float64(n), fn)
	}
	if c.a.cfg.PodLister != nil {
		emit(c.podErr, prometheus.CounterValue, float64(s.podErrs))
	}
}

// Handler serves /metrics (the agent's collector and any extra ones, e.g.
// the publisher's), /healthz (503 when sampling has stalled for three
// intervals) and /inventory (the JSON the agent publishes on its Node).
func (a *Agent) Handler(extra ...prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range append([]prometheus.Collector{a.Collector()}, extra...) {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gpu agent metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		age := a.cfg.Now().Sub(a.LastSample())
		if limit := 3*a.cfg.Interval + 5*time.Second; age > limit {
			http.Error(w, fmt.Sprintf("last sample %v ago: more than %v", age.Round(time.Millisecond), limit), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /inventory", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(a.Inventory()); err != nil {
			a.log.Debug("write inventory", "err", err)
		}
	})
	return mux, nil
}
