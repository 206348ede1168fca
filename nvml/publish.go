package nvml

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/nvml/inventory"
)

// Defaults of PublisherConfig.
const (
	DefaultPublishMinInterval = 10 * time.Second
	DefaultPublishHeartbeat   = 5 * time.Minute
	DefaultFreeStepMiB        = 1024
)

// FieldManager names the agent in the Node's managed fields.
const FieldManager = "babelfish-gpu-agent"

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Client   kubernetes.Interface // required
	NodeName string               // required: the Node to patch
	// MinInterval is the least time between two writes of the Node
	// (DefaultPublishMinInterval when 0): a flapping GPU costs the API
	// server at most one write per MinInterval.
	MinInterval time.Duration
	// Heartbeat rewrites an unchanged inventory this often
	// (DefaultPublishHeartbeat when 0), so its Updated time shows the agent
	// is alive.
	Heartbeat time.Duration
	// FreeStepMiB is how far a GPU's free memory must move before it counts
	// as a change (DefaultFreeStepMiB when 0); below it only the heartbeat
	// carries it.
	FreeStepMiB int64
	Logger      *slog.Logger
}

// Publisher writes the agent's inventory onto its Node: the GFD-style
// labels and the babelfish.dev/gpu-inventory annotation (see package
// inventory), with one JSON merge patch of the Node's metadata, only when
// something changed and at most every MinInterval.
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger

	mu        sync.Mutex
	published uint64
	failed    uint64

	okDesc, errDesc *prometheus.Desc
}

// NewPublisher checks cfg and returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("inventory publisher config client: required")
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("inventory publisher config node name: required")
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = DefaultPublishMinInterval
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultPublishHeartbeat
	}
	if cfg.FreeStepMiB == 0 {
		cfg.FreeStepMiB = DefaultFreeStepMiB
	}
	switch {
	case cfg.MinInterval < 0:
		return nil, fmt.Errorf("inventory publisher config min interval %v: must be > 0", cfg.MinInterval)
	case cfg.Heartbeat < cfg.MinInterval:
		return nil, fmt.Errorf("inventory publisher config heartbeat %v: must be >= min interval %v", cfg.Heartbeat, cfg.MinInterval)
	case cfg.FreeStepMiB < 0:
		return nil, fmt.Errorf("inventory publisher config free step %d MiB: must be >= 0", cfg.FreeStepMiB)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Publisher{
		cfg:     cfg,
		log:     cfg.Logger,
		okDesc:  prometheus.NewDesc("babelfish_gpu_agent_inventory_publishes_total", "Writes of the GPU inventory onto the Node.", nil, nil),
		errDesc: prometheus.NewDesc("babelfish_gpu_agent_inventory_publish_errors_total", "Failed writes of the GPU inventory onto the Node.", nil, nil),
	}, nil
}

// Publish writes inv onto the Node now, whatever changed.
func (p *Publisher) Publish(ctx context.Context, inv *inventory.Inventory) error {
	if inv.Node != p.cfg.NodeName {
		return fmt.Errorf("inventory node %q: publisher writes node %q", inv.Node, p.cfg.NodeName)
	}
	raw, err := inventory.Encode(inv)
	if err != nil {
		return err
	}
	patch := map[string]any{"metadata": map[string]any{
		"labels":      inventory.NodeLabels(inv),
		"annotations": map[string]string{inventory.Annotation: string(raw)},
	}}
	body, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("inventory patch: %w", err)
	}
	_, err = p.cfg.Client.CoreV1().Nodes().Patch(ctx, p.cfg.NodeName, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager})
	p.mu.Lock()
	if err != nil {
		p.failed++
	} else {
		p.published++
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("patch node %s: %w", p.cfg.NodeName, err)
	}
	return nil
}

// Stats returns how many writes succeeded and failed.
func (p *Publisher) Stats() (published, failed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.published, p.failed
}

// InventorySource is what Run publishes: an Agent.
type InventorySource interface {
	Inventory() *inventory.Inventory
	Updates() <-chan struct{}
}

// Run publishes src's inventory after every sample that changed it (see
// inventory.Equivalent), no sooner than MinInterval after the previous
// attempt, and at least every Heartbeat, until ctx ends. A failed write is
// retried after MinInterval.
func (p *Publisher) Run(ctx context.Context, src InventorySource) {
	var (
		last        *inventory.Inventory
		lastOK      time.Time
		lastAttempt time.Time
		retry       = time.NewTimer(0)
	)
	<-retry.C
	defer retry.Stop()
	armed := false
	for {
		inv := src.Inventory()
		due := last == nil || !inventory.Equivalent(last, inv, p.cfg.FreeStepMiB) || time.Since(lastOK) >= p.cfg.Heartbeat
		if due {
			if wait := p.cfg.MinInterval - time.Since(lastAttempt); wait > 0 {
				if !armed {
					retry.Reset(wait)
					armed = true
				}
			} else {
				lastAttempt = time.Now()
				if err := p.Publish(ctx, inv); err != nil {
					if ctx.Err() != nil {
						return
					}
					p.log.Warn("publish gpu inventory; retrying", "err", err, "in", p.cfg.MinInterval)
					retry.Reset(p.cfg.MinInterval)
					armed = true
				} else {
					p.log.Debug("gpu inventory published", "node", p.cfg.NodeName, "healthy", inv.HealthyCount(), "gpus", len(inv.GPUs))
					last, lastOK = inv, lastAttempt
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-src.Updates():
		case <-retry.C:
			armed = false
		}
	}
}

// Describe and Collect make the publisher's counters part of /metrics.
func (p *Publisher) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.okDesc
	ch <- p.errDesc
}

// Collect implements prometheus.Collector.
func (p *Publisher) Collect(ch chan<- prometheus.Metric) {
	ok, failed := p.Stats()
	ch <- prometheus.MustNewConstMetric(p.okDesc, prometheus.CounterValue, float64(ok))
	ch <- prometheus.MustNewConstMetric(p.errDesc, prometheus.CounterValue, float64(failed))
}
