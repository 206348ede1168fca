package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/internal/promscrape"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// The GPU agent's series (dcgm-exporter's names where it has one; see
// package nvml).
const (
	metricUtil    = "DCGM_FI_DEV_GPU_UTIL"    // %
	metricFBUsed  = "DCGM_FI_DEV_FB_USED"     // MiB
	metricFBFree  = "DCGM_FI_DEV_FB_FREE"     // MiB
	metricFBTotal = "DCGM_FI_DEV_FB_TOTAL"    // MiB
	metricTemp    = "DCGM_FI_DEV_GPU_TEMP"    // °C
	metricPower   = "DCGM_FI_DEV_POWER_USAGE" // W
	metricHealthy = "babelfish_gpu_healthy"   // 1 healthy
	metricPodInfo = "babelfish_gpu_pod_info"  // 1 per holder
)

// liveGPU is one GPU as an agent's /metrics shows it.
type liveGPU struct {
	index                          int
	uuid, model                    string
	util, used, total, temp, power *float64
	healthy                        *bool
	pods                           []string
}

// agentGPUs reads one agent's answer, by UUID.
func agentGPUs(fams families) map[string]*liveGPU {
	out := map[string]*liveGPU{}
	gpu := func(l map[string]string) *liveGPU {
		g, ok := out[l["UUID"]]
		if !ok {
			idx, _ := strconv.Atoi(l["gpu"])
			g = &liveGPU{index: idx, uuid: l["UUID"], model: l["modelName"]}
			out[g.uuid] = g
		}
		return g
	}
	set := func(name string, f func(g *liveGPU, v float64)) {
		for _, m := range fams[name].GetMetric() {
			if l := promscrape.Labels(m); l["UUID"] != "" {
				f(gpu(l), promscrape.Value(m))
			}
		}
	}
	set(metricUtil, func(g *liveGPU, v float64) { g.util = &v })
	set(metricFBUsed, func(g *liveGPU, v float64) { g.used = &v })
	set(metricFBTotal, func(g *liveGPU, v float64) { g.total = &v })
	set(metricTemp, func(g *liveGPU, v float64) { g.temp = &v })
	set(metricPower, func(g *liveGPU, v float64) { g.power = &v })
	set(metricHealthy, func(g *liveGPU, v float64) { h := v == 1; g.healthy = &h })
	// A dcgm-exporter has no FB_TOTAL by default: used + free.
	set(metricFBFree, func(g *liveGPU, v float64) {
		if g.total == nil && g.used != nil {
			t := *g.used + v
			g.total = &t
		}
	})
	for _, m := range fams[metricPodInfo].GetMetric() {
		if l := promscrape.Labels(m); l["UUID"] != "" && l["pod"] != "" {
			g := gpu(l)
			g.pods = append(g.pods, l["namespace"]+"/"+l["pod"])
		}
	}
	for _, g := range out {
		slices.Sort(g.pods)
		g.pods = slices.Compact(g.pods)
	}
	return out
}

// GPUs returns every node with an inventory or a GPU agent, and its GPUs:
// the inventory's figures, overlaid with the agent's live ones.
func (s *Source) GPUs(ctx context.Context) ([]dashboard.Node, error) {
	var (
		nodes     *corev1.NodeList
		agents    *corev1.PodList
		nodeErr   error
		agentErr  error
		listGroup sync.WaitGroup
	)
	listGroup.Go(func() {
		nodes, nodeErr = s.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: s.cfg.nodeSelector})
	})
	listGroup.Go(func() {
		agents, agentErr = s.cs.CoreV1().Pods(s.cfg.agentNamespace).List(ctx, metav1.ListOptions{LabelSelector: s.cfg.agentSelector})
	})
	listGroup.Wait()
	if nodeErr != nil {
		return nil, fmt.Errorf("list nodes: %w", nodeErr)
	}
	if agentErr != nil {
		// Without agents the inventories still say a lot.
		s.cfg.log.Warn("dashboard: list GPU agent pods", "selector", s.cfg.agentSelector, "err", agentErr)
		agents = &corev1.PodList{}
	}

	byName := map[string]*dashboard.Node{}
	var order []string
	node := func(name string) *dashboard.Node {
		n, ok := byName[name]
		if !ok {
			n = &dashboard.Node{Name: name, GPUs: []dashboard.GPU{}}
			byName[name] = n
			order = append(order, name)
		}
		return n
	}
	wanted := map[string]bool{}
	for i := range nodes.Items {
		nd := &nodes.Items[i]
		wanted[nd.Name] = true
		inv, err := inventory.FromNode(nd.Name, nd.Annotations)
		if errors.Is(err, inventory.ErrNoInventory) {
			continue
		}
		if err != nil {
			s.cfg.log.Warn("dashboard: node GPU inventory unreadable", "node", nd.Name, "err", err)
			continue
		}
		n := node(nd.Name)
		for _, g := range inv.GPUs {
			total := float64(g.MemoryMiB)
			dg := dashboard.GPU{Index: g.Index, UUID: g.UUID, Model: g.Model, MemTotalMiB: &total, Healthy: g.Healthy, Reason: g.Reason}
			if g.FreeMiB != nil {
				used := float64(g.MemoryMiB - *g.FreeMiB)
				dg.MemUsedMiB = &used
			}
			n.GPUs = append(n.GPUs, dg)
		}
	}

	// Scrape every agent on a wanted node at once, each under the scrape
	// timeout.
	type result struct {
		node string
		gpus map[string]*liveGPU
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
		present = map[string]bool{}
	)
	for i := range agents.Items {
		p := &agents.Items[i]
		present[p.Namespace+"/"+p.Name] = true
		if p.Spec.NodeName == "" || !wanted[p.Spec.NodeName] || !podUsable(p) {
			continue
		}
		url := podMetricsURL(p, s.cfg.agentPort)
		if url == "" {
			continue
		}
		key := p.Namespace + "/" + p.Name
		wg.Go(func() {
			fams, err := scrape(ctx, s.cfg.client, url, s.cfg.scrapeTimeout)
			s.live.agentResult(s.cfg.log, key, p.Spec.NodeName, err)
			if err != nil {
				return
			}
			mu.Lock()
			results = append(results, result{node: p.Spec.NodeName, gpus: agentGPUs(fams)})
			mu.Unlock()
		})
	}
	wg.Wait()
	if agentErr == nil {
		s.live.forgetAgents(present)
	}

	for _, r := range results {
		n := node(r.node)
		for _, lg := range r.gpus {
			i := slices.IndexFunc(n.GPUs, func(g dashboard.GPU) bool { return g.UUID == lg.uuid })
			if i < 0 {
				// Not in the inventory (not published, or published before
				// this GPU appeared): the agent alone says what it is.
				n.GPUs = append(n.GPUs, dashboard.GPU{Index: lg.index, UUID: lg.uuid, Model: lg.model, Healthy: true})
				i = len(n.GPUs) - 1
			}
			g := &n.GPUs[i]
			g.UtilPct, g.TempC, g.PowerW, g.Pods = lg.util, lg.temp, lg.power, lg.pods
			if lg.used != nil {
				g.MemUsedMiB = lg.used
			}
			if lg.total != nil {
				g.MemTotalMiB = lg.total
			}
			if lg.healthy != nil {
				// The agent's own word is newer than the annotation, which it
				// rewrites at most every publish interval.
				g.Healthy = *lg.healthy
				if g.Healthy {
					g.Reason = ""
				}
			}
		}
	}

	slices.Sort(order)
	out := make([]dashboard.Node, 0, len(order))
	for _, name := range order {
		n := byName[name]
		slices.SortFunc(n.GPUs, func(a, b dashboard.GPU) int { return cmp.Compare(a.Index, b.Index) })
		out = append(out, *n)
	}
	return out, nil
}
