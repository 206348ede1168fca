package loader

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a loader's Prometheus series. Every stream of a process
// (one per rank, or one per split) can share one set.
type Metrics struct {
	ShardsFetched  prometheus.Counter
	BytesFetched   prometheus.Counter
	CorruptShards  prometheus.Counter
	SkippedSamples prometheus.Counter
	Evictions      prometheus.Counter
	WaitSeconds    prometheus.Counter
	CacheBytes     prometheus.Gauge
}

// NewMetrics makes the loader's series and registers them with reg (none
// when reg is nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		ShardsFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_shards_fetched_total",
			Help: "Shards downloaded, verified against their sha256 and decoded.",
		}),
		BytesFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_fetched_bytes_total",
			Help: "Bytes of shards downloaded and verified.",
		}),
		CorruptShards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_corrupt_shards_total",
			Help: "Shards that failed their sha256 or did not decode, each counted once per stream.",
		}),
		SkippedSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_skipped_samples_total",
			Help: "Samples dropped from batches because their shard was corrupt (corrupt policy skip).",
		}),
		Evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_cache_evictions_total",
			Help: "Decoded shards dropped from the cache to make room for another.",
		}),
		WaitSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "babelfish_loader_wait_seconds_total",
			Help: "Time Next spent waiting for shards: the input stall seen by training.",
		}),
		CacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "babelfish_loader_cache_bytes",
			Help: "Bytes of shards held or being downloaded, by manifest size.",
		}),
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.ShardsFetched, m.BytesFetched, m.CorruptShards,
			m.SkippedSamples, m.Evictions, m.WaitSeconds, m.CacheBytes} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Stats counts what one stream did.
type Stats struct {
	ShardsFetched  int64
	BytesFetched   int64
	Evictions      int64
	CorruptShards  []string // shard keys, in the order they were found
	SkippedSamples int64    // of this rank's share
	CacheBytes     int64    // held now
	PeakCacheBytes int64    // the most ever held; never above Options.CacheBytes
	Wait           time.Duration
}

// The metric updates below are no-ops without Metrics.

func (m *Metrics) fetched(bytes int64) {
	if m != nil {
		m.ShardsFetched.Inc()
		m.BytesFetched.Add(float64(bytes))
	}
}

func (m *Metrics) corrupt() {
	if m != nil {
		m.CorruptShards.Inc()
	}
}

func (m *Metrics) skipped(n int) {
	if m != nil && n > 0 {
		m.SkippedSamples.Add(float64(n))
	}
}

func (m *Metrics) evicted() {
	if m != nil {
		m.Evictions.Inc()
	}
}

func (m *Metrics) waited(d time.Duration) {
	if m != nil {
		m.WaitSeconds.Add(d.Seconds())
	}
}

func (m *Metrics) cache(delta int64) {
	if m != nil {
		m.CacheBytes.Add(float64(delta))
	}
}
