package nvml_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/scheduler/core"
)

// nodeInfo is what the scheduler's controller does with a Node: the
// inventory decides the GPUs, their health and islands.
func nodeInfo(t *testing.T, n *corev1.Node) core.NodeInfo {
	t.Helper()
	inv, err := inventory.FromNode(n.Name, n.Annotations)
	if err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	info := core.NodeInfo{
		Name:      n.Name,
		CPUMilli:  n.Status.Allocatable.Cpu().MilliValue(),
		MemoryMiB: n.Status.Allocatable.Memory().Value() >> 20,
		GPUModel:  inv.Model(),
	}
	for _, g := range inv.GPUs {
		info.GPUs = append(info.GPUs, core.GPUInfo{Index: g.Index, MemoryMiB: g.MemoryMiB, Healthy: g.Healthy, Island: g.Island})
	}
	return info
}

func getNode(t *testing.T, cs kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWithAPIServer runs the tests that need a real kube-apiserver on one
// control plane; each uses its own Nodes.
func TestWithAPIServer(t *testing.T) {
	cs := testenv.ControlPlaneForTest(t).Clientset()
	t.Run("XIDToSchedulerPlacement", func(t *testing.T) { testXIDToSchedulerPlacement(t, cs) })
	t.Run("PublisherErrors", func(t *testing.T) { testPublisherErrors(t, cs) })
	t.Run("NodeRowsAndTable", func(t *testing.T) { testNodeRowsAndTable(t, cs) })
}

// testXIDToSchedulerPlacement is the whole chain against a real API server:
// an XID on GPU 3 makes it unhealthy, the agent publishes that on its Node,
// the scheduler's view parsed from the Node marks it, and the scheduling
// core places a 7-GPU job on the other seven and cannot place an 8-GPU one.
// It also checks the rate limit: a steady node is not rewritten.
func testXIDToSchedulerPlacement(t *testing.T, cs kubernetes.Interface) {
	const node = "gpu-node-1"
	if _, err := testenv.RegisterGPUNode(t.Context(), cs, node, 8, nil); err != nil {
		t.Fatal(err)
	}

	r := newRig(t, "dgxa100", func(c *nvml.Config) { c.NodeName = node })
	r.run(t)
	pub, err := nvml.NewPublisher(nvml.PublisherConfig{
		Client: cs, NodeName: node, MinInterval: 300 * time.Millisecond, Heartbeat: time.Hour, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(ctx, r.agent) }()
	t.Cleanup(func() { cancel(); <-done })

	// First publish: labels and a healthy inventory.
	eventually(t, "the first publish", func() bool { ok, _ := pub.Stats(); return ok >= 1 })
	n := getNode(t, cs, node)
	wantLabels := map[string]string{
		inventory.LabelProduct: "Mock-NVIDIA-A100-SXM4-40GB",
		inventory.LabelCount:   "8",
		inventory.LabelMemory:  "40960",
		inventory.LabelFamily:  "ampere",
		corev1.LabelHostname:   node, // left as the kubelet set it
	}
	for k, v := range wantLabels {
		if n.Labels[k] != v {
			t.Errorf("node label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	before := nodeInfo(t, n)
	if len(before.GPUs) != 8 || slices.ContainsFunc(before.GPUs, func(g core.GPUInfo) bool { return !g.Healthy }) {
		t.Fatalf("first inventory: %+v", before.GPUs)
	}

	// Samples keep coming every 20 ms, but the frozen clock keeps every
	// value equal: nothing to write.
	time.Sleep(time.Second)
	if ok, failed := pub.Stats(); ok != 1 || failed != 0 {
		t.Fatalf("steady inventory written %d times (%d failed) in 1 s: want exactly once", ok, failed)
	}

	inject(t, func() error { return r.fake.InjectXID(3, 79) })
	var after core.NodeInfo
	eventually(t, "gpu 3 unhealthy on the Node", func() bool {
		after = nodeInfo(t, getNode(t, cs, node))
		return !after.GPUs[3].Healthy
	})
	for i, g := range after.GPUs {
		if g.Index != i || g.Healthy != (i != 3) || g.MemoryMiB != 40960 || g.Island != 0 {
			t.Errorf("scheduler view of gpu %d: %+v", i, g)
		}
	}
	inv, err := inventory.FromNode(node, getNode(t, cs, node).Annotations)
	if err != nil {
		t.Fatal(err)
	}
	if g := inv.GPUs[3]; !strings.Contains(g.Reason, "xid 79") || g.Since == nil {
		t.Errorf("inventory gpu 3 reason %q since %v", g.Reason, g.Since)
	}

	// The scheduling core, fed the node as the controller would.
	snap := &core.Snapshot{
		Now:   time.Now(),
		Nodes: []core.NodeInfo{after},
		Pending: []core.Job{
			{Name: "eight", Workers: 1, Worker: core.Request{CPUMilli: 1000, MemoryMiB: 1024, GPUs: 8, GPUMilli: 1000}, Created: time.Unix(1, 0)},
			{Name: "seven", Workers: 1, Worker: core.Request{CPUMilli: 1000, MemoryMiB: 1024, GPUs: 7, GPUMilli: 1000}, Created: time.Unix(2, 0)},
		},
	}
	plan, err := core.Schedule(snap, core.Config{Scorer: core.BestFit{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Bindings) != 1 || plan.Bindings[0].Job != "seven" {
		t.Fatalf("plan %+v: want only job seven bound", plan)
	}
	for _, s := range plan.Bindings[0].GPUs {
		if s.Index == 3 {
			t.Fatalf("job seven placed on unhealthy gpu 3: %+v", plan.Bindings[0].GPUs)
		}
	}
	if len(plan.Pending) != 1 || plan.Pending[0].Job != "eight" {
		t.Errorf("pending %+v: want job eight", plan.Pending)
	}
	// Before the XID the same 8-GPU job fits.
	snap.Nodes = []core.NodeInfo{before}
	if plan, err = core.Schedule(snap, core.Config{Scorer: core.BestFit{}}); err != nil || len(plan.Bindings) == 0 || plan.Bindings[0].Job != "eight" {
		t.Fatalf("healthy node: plan %+v err %v: want job eight bound", plan, err)
	}

	// Recovery reaches the Node too.
	r.clk.Add(2 * time.Minute)
	eventually(t, "gpu 3 healthy again on the Node", func() bool {
		return nodeInfo(t, getNode(t, cs, node)).GPUs[3].Healthy
	})
	// The publisher counts a write after the API server answers it, so
	// the Node can show the recovery a moment before the count does.
	eventually(t, "the recovery write counted", func() bool { ok, _ := pub.Stats(); return ok >= 3 })
	if ok, _ := pub.Stats(); ok != 3 {
		t.Errorf("%d writes: want 3 (first, fault, recovery)", ok)
	}
}

func testPublisherErrors(t *testing.T, cs kubernetes.Interface) {
	r := newRig(t, "dgxh100", func(c *nvml.Config) { c.NodeName = "absent" })

	cases := []struct {
		name string
		cfg  nvml.PublisherConfig
		want string
	}{
		{"no client", nvml.PublisherConfig{NodeName: "n"}, "client: required"},
		{"no node", nvml.PublisherConfig{Client: cs}, "node name: required"},
		{"heartbeat below min", nvml.PublisherConfig{Client: cs, NodeName: "n", MinInterval: time.Minute, Heartbeat: time.Second}, "heartbeat 1s"},
	}
	for _, c := range cases {
		if _, err := nvml.NewPublisher(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}

	pub, err := nvml.NewPublisher(nvml.PublisherConfig{Client: cs, NodeName: "absent", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), r.agent.Inventory())
	if err == nil || !strings.Contains(err.Error(), "patch node absent") {
		t.Fatalf("publish on a missing node: %v", err)
	}
	if _, failed := pub.Stats(); failed != 1 {
		t.Errorf("failed writes %d, want 1", failed)
	}
	other := r.agent.Inventory()
	other.Node = "elsewhere"
	if err := pub.Publish(t.Context(), other); err == nil || !strings.Contains(err.Error(), `"elsewhere"`) {
		t.Errorf("publish another node's inventory: %v", err)
	}
}

// testNodeRowsAndTable reads published inventories back the way `babelfish
// gpus` does.
func testNodeRowsAndTable(t *testing.T, cs kubernetes.Interface) {
	for _, name := range []string{"b-node", "a-node", "cpu-node"} {
		gpus := 8
		if name == "cpu-node" {
			gpus = 0
		}
		if _, err := testenv.RegisterGPUNode(t.Context(), cs, name, gpus, map[string]string{"table-test": "yes"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a-node", "b-node"} {
		r := newRig(t, "dgxh100", func(c *nvml.Config) { c.NodeName = name })
		if name == "b-node" {
			if err := r.fake.LoseGPU(1); err != nil {
				t.Fatal(err)
			}
			r.agent.Sample(t.Context())
		}
		pub, err := nvml.NewPublisher(nvml.PublisherConfig{Client: cs, NodeName: name, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(t.Context(), r.agent.Inventory()); err != nil {
			t.Fatal(err)
		}
	}
	// a node with a broken annotation is reported, the others still shown
	if _, err := cs.CoreV1().Nodes().Patch(t.Context(), "cpu-node", "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"nvidia.com/gpu.count":"1"},"annotations":{"babelfish.dev/gpu-inventory":"{"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// other subtests' nodes carry the GPU labels too
	rows, err := nvml.NodeRows(t.Context(), cs, "table-test=yes,"+inventory.LabelCount)
	if err == nil || !strings.Contains(err.Error(), "node cpu-node") {
		t.Errorf("broken inventory not reported: %v", err)
	}
	if errors.Is(err, inventory.ErrNoInventory) {
		t.Errorf("broken inventory reported as missing")
	}
	if len(rows) != 16 || rows[0].Node != "a-node" || rows[8].Node != "b-node" || rows[9].Index != 1 {
		t.Fatalf("rows: %d, first %s, ninth %s", len(rows), rows[0].Node, rows[8].Node)
	}
	if h := rows[9].Healthy; h == nil || *h || rows[9].Reason != "gpu lost" || rows[9].MemUsedMiB != nil {
		t.Errorf("b-node gpu 1 row: %+v", rows[9])
	}
	var buf bytes.Buffer
	if err := nvml.WriteTable(&buf, rows, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"NODE", "a-node", "NVIDIA H100 80GB HBM3", "UNHEALTHY (gpu lost)", "?/81920 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got := strings.Count(out, "\n"); got != 17 {
		t.Errorf("table has %d lines, want 17:\n%s", got, out)
	}
}
