package kube

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"

	"babelfish.dev/babelfish/internal/promscrape"
)

// metricsPortName is the container port the chart names for /metrics.
const metricsPortName = "metrics"

// families is one parsed /metrics answer.
type families map[string]*dto.MetricFamily

// scrape reads url's metrics under timeout.
func scrape(ctx context.Context, client *http.Client, url string, timeout time.Duration) (families, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return promscrape.Scrape(ctx, client, url)
}

// podMetricsURL is http://podIP:port/metrics, port being the container
// port named "metrics" or else def; "" when the pod has no IP yet.
func podMetricsURL(p *corev1.Pod, def int) string {
	if p.Status.PodIP == "" {
		return ""
	}
	port := def
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == metricsPortName && cp.ContainerPort > 0 {
				port = int(cp.ContainerPort)
			}
		}
	}
	return "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)) + "/metrics"
}

// podUsable: running and not being deleted, so worth a scrape.
func podUsable(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
