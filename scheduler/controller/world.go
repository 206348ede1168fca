package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/scheduler/core"
)

// world is everything one pass looks at, read straight from the API server.
type world struct {
	now     time.Time
	nodes   []corev1.Node
	queues  []v1alpha1.Queue
	jobs    []v1alpha1.TrainingJob
	pods    []corev1.Pod // the scheduler's worker pods (label LabelJob)
	foreign []corev1.Pod // other pods bound to a node and not finished
}

// readWorld lists what a pass needs, all at once. The reads are quorum
// reads (no resourceVersion), so they include every write the scheduler
// made before.
func readWorld(ctx context.Context, crd *crdClient, cs kubernetes.Interface, o *Options) (*world, error) {
	namespace := o.Namespace
	w := &world{now: time.Now()}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var l v1alpha1.TrainingJobList
		if err := crd.list(ctx, resTrainingJobs, namespace, &l); err != nil {
			return fmt.Errorf("list trainingjobs: %w", err)
		}
		w.jobs = l.Items
		return nil
	})
	g.Go(func() error {
		var l v1alpha1.QueueList
		if err := crd.list(ctx, resQueues, "", &l); err != nil {
			return fmt.Errorf("list queues: %w", err)
		}
		w.queues = l.Items
		return nil
	})
	g.Go(func() error {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: o.NodeSelector})
		if err != nil {
			return fmt.Errorf("list nodes: %w", err)
		}
		w.nodes = l.Items
		return nil
	})
	g.Go(func() error {
		l, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJob})
		if err != nil {
			return fmt.Errorf("list worker pods: %w", err)
		}
		w.pods = l.Items
		return nil
	})
	g.Go(func() error {
		// Pods of other schedulers take CPU and memory from our nodes.
		sel := fmt.Sprintf("spec.schedulerName!=%s,spec.nodeName!=,status.phase!=%s,status.phase!=%s", o.SchedulerName, corev1.PodSucceeded, corev1.PodFailed)
		l, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return fmt.Errorf("list other pods: %w", err)
		}
		w.foreign = l.Items
		return nil
	})
	return w, g.Wait()
}

// nodeInfos turns Nodes into the core's view: CPU and memory are what is
// allocatable less what other schedulers' pods request; GPUs come from
// the GPU agent's inventory only, so a node without one (no agent, or a
// malformed one) offers no GPUs, and an unhealthy GPU is never offered.
func nodeInfos(nodes []corev1.Node, foreign []corev1.Pod, log *slog.Logger) []core.NodeInfo {
	type used struct{ cpu, mem int64 }
	taken := map[string]used{}
	for i := range foreign {
		p := &foreign[i]
		c, m := podRequests(p)
		u := taken[p.Spec.NodeName]
		taken[p.Spec.NodeName] = used{u.cpu + c, u.mem + m}
	}
	out := make([]core.NodeInfo, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		u := taken[n.Name]
		info := core.NodeInfo{
			Name:          n.Name,
			CPUMilli:      max(0, n.Status.Allocatable.Cpu().MilliValue()-u.cpu),
			MemoryMiB:     max(0, n.Status.Allocatable.Memory().Value()>>20-u.mem),
			Unschedulable: n.Spec.Unschedulable || !nodeReady(n),
		}
		inv, err := inventory.FromNode(n.Name, n.Annotations)
		switch {
		case errors.Is(err, inventory.ErrNoInventory):
			log.Debug("node has no GPU inventory: no GPUs offered", "node", n.Name)
		case err != nil:
			log.Warn("node GPU inventory unreadable: no GPUs offered", "node", n.Name, "err", err)
		default:
			info.GPUModel = inv.Model()
			for _, g := range inv.GPUs {
				info.GPUs = append(info.GPUs, core.GPUInfo{Index: g.Index, MemoryMiB: g.MemoryMiB, Healthy: g.Healthy, Island: g.Island})
			}
		}
		out = append(out, info)
	}
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// coreQueue is a Queue as the core sees it.
func coreQueue(q *v1alpha1.Queue) core.Queue {
	limit := int64(-1)
	if q.Spec.BorrowingLimitGPUMilli != nil {
		limit = *q.Spec.BorrowingLimitGPUMilli
	}
	return core.Queue{
		Name:                   q.Name,
		NominalGPUMilli:        q.Spec.NominalMilli(),
		Weight:                 float64(max(1, q.Spec.Weight)),
		BorrowingLimitGPUMilli: limit,
	}
}

// podTerminal reports whether a pod has finished: it holds nothing any more.
func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
