package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/controller"
	"babelfish.dev/babelfish/scheduler/dashboard"
)

// crdDir holds the CRDs generated from api/v1alpha1.
const crdDir = "../../../charts/babelfish/crds"

const (
	agentNS   = "babelfish"
	jobNS     = "research"
	poolLabel = "babelfish.dev/test-pool"
	pool      = poolLabel + "=dash"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// agent is a real GPU agent on a simulated machine, in this process: it
// publishes its inventory on its Node and serves /metrics on loopback.
type agent struct {
	fake *nvml.Fake
	srv  *http.Server
	addr string
}

func startAgent(t *testing.T, cs kubernetes.Interface, kind, node string) *agent {
	t.Helper()
	fake, err := nvml.NewFake(kind)
	if err != nil {
		t.Fatal(err)
	}
	a, err := nvml.New(t.Context(), nvml.Config{NVML: fake.Interface(), Hostname: node, NodeName: node, Interval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := nvml.NewPublisher(nvml.PublisherConfig{Client: cs, NodeName: node, MinInterval: 200 * time.Millisecond, Heartbeat: time.Minute, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := a.Handler(pub)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { pub.Run(ctx, a) })
	wg.Go(func() { _ = a.Run(ctx) })
	t.Cleanup(func() {
		_ = srv.Close()
		cancel()
		wg.Wait()
		_ = a.Close()
	})
	return &agent{fake: fake, srv: srv, addr: ln.Addr().String()}
}

// hangingAddr accepts connections and never answers: an agent that is
// wedged, or a pod IP behind a dropped route.
func hangingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// runningPod creates a pod on node whose /metrics is at addr (host:port)
// and writes its status as its kubelet would: Running, Ready, podIP.
func runningPod(t *testing.T, cs kubernetes.Interface, ns, name, node, component, addr string) {
	t.Helper()
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int32
	if _, err := fmt.Sscan(portS, &port); err != nil {
		t.Fatal(err)
	}
	no := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			"app.kubernetes.io/part-of": "babelfish", "app.kubernetes.io/component": component,
		}},
		Spec: corev1.PodSpec{
			NodeName: node, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: component, Image: "babelfish:test",
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: port}}}},
		},
	}
	p, err = cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: host, PodIPs: []corev1.PodIP{{IP: host}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// playKubelet starts the worker pods the scheduler binds, as kubelets
// would.
func playKubelet(t *testing.T, cs kubernetes.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for i := range l.Items {
					p := &l.Items[i]
					if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodPending && p.DeletionTimestamp == nil {
						p.Status.Phase = corev1.PodRunning
						p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image,
							Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
						if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && ctx.Err() == nil {
							t.Logf("kubelet: %v", err)
						}
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
}

func trainingJob(name string, workers, gpus, priority int32) *v1alpha1.TrainingJob {
	return &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: jobNS},
		Spec: v1alpha1.TrainingJobSpec{
			Dataset:       v1alpha1.DatasetRef{Name: "cldr-phrases", Version: "v1"},
			Model:         v1alpha1.ModelConfig{Languages: []string{"de", "fr"}, Steps: 20000},
			Workers:       workers,
			GPUsPerWorker: gpus,
			Priority:      priority,
			Template:      v1alpha1.WorkerTemplate{Image: "babelfish:test"},
		},
	}
}

// TestSourceOnAPIServer runs the Source against a real kube-apiserver:
// two GPU nodes whose inventories real GPU agents (go-nvml's simulated
// DGX A100 and H100) published, one of them answering /metrics and one
// wedged; TrainingJobs placed by the real scheduler controller; model
// releases promoted into a real MinIO; serving pods' /metrics.
func TestSourceOnAPIServer(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(crdDir))
	cs := cp.Clientset()
	ctx := t.Context()
	for _, ns := range []string{agentNS, jobNS} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"dgx-a", "dgx-b", "other"} {
		if _, err := testenv.RegisterGPUNode(ctx, cs, n, 8, map[string]string{poolLabel: strings.TrimPrefix(pool, poolLabel+"=")}); err != nil {
			t.Fatal(err)
		}
	}
	// A node outside the selector: never shown.
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "other", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"`+poolLabel+`":"elsewhere"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	agentA := startAgent(t, cs, "dgxa100", "dgx-a")
	startAgent(t, cs, "dgxh100", "dgx-b")
	startAgent(t, cs, "dgxa100", "other")
	for _, n := range []string{"dgx-a", "dgx-b", "other"} {
		eventually(t, 20*time.Second, n+" inventory published", func() (bool, string) {
			nd, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			inv, err := inventory.FromNode(nd.Name, nd.Annotations)
			return err == nil && len(inv.GPUs) == 8, fmt.Sprint(err)
		})
	}
	runningPod(t, cs, agentNS, "gpu-agent-a", "dgx-a", "gpu-agent", agentA.addr)
	runningPod(t, cs, agentNS, "gpu-agent-b", "dgx-b", "gpu-agent", hangingAddr(t))

	// TrainingJobs, placed by the real scheduler on the published GPUs.
	s, err := controller.New(cp.Config(), controller.Options{Namespace: jobNS, NodeSelector: pool, Resync: time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSched := context.WithCancel(context.WithoutCancel(ctx))
	schedDone := make(chan error, 1)
	go func() { schedDone <- s.Run(sctx) }()
	t.Cleanup(func() {
		stopSched()
		if err := <-schedDone; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	playKubelet(t, cs, jobNS)
	crd, err := crdClient(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []*v1alpha1.TrainingJob{trainingJob("s2st-de-fr", 1, 8, 10), trainingJob("s2st-100-langs", 4, 8, 5)} {
		if err := crd.Post().Namespace(jobNS).Resource("trainingjobs").Body(j).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
	}

	// Releases promoted from checkpoints into a real MinIO.
	store := newStore(t)
	reg, err := registry.New(store, "s2st", registry.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	for i, acc := range []float64{0.42, 0.71} {
		ck := writeCheckpoint(t, store, "s2st-de-fr", int64(400*(i+1)), tinyModel(t, uint64(i+1)), map[string]float64{"concept_accuracy": acc, "mcd": 9 - float64(i)})
		if _, err := reg.Promote(ctx, ck); err != nil {
			t.Fatal(err)
		}
	}
	releases, err := NewRegistry(store, WithRegistryLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}

	// Two serving replicas.
	servers := []*fakeServing{newFakeServing(t, "s2st/releases/2"), newFakeServing(t, "s2st/releases/2")}
	for i, fs := range servers {
		runningPod(t, cs, agentNS, fmt.Sprintf("serving-%d", i), "dgx-a", "serving", fs.addr)
	}

	clock := &fakeClock{t: time.Now()}
	src, err := New(cp.Config(),
		WithJobNamespace(jobNS), WithNodeSelector(pool), WithAgentPods(agentNS, DefaultAgentSelector),
		WithServingPods(agentNS, DefaultServingSelector), WithScrapeTimeout(500*time.Millisecond),
		WithReleases(releases), WithLogger(quiet()), withClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("gpus", func(t *testing.T) {
		began := time.Now()
		nodes, err := src.GPUs(ctx)
		took := time.Since(began)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("GPUs of %d nodes in %v (one agent wedged, scrape timeout 500ms)", len(nodes), took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("GPUs took %v: a wedged agent must cost at most the scrape timeout", took)
		}
		if len(nodes) != 2 || nodes[0].Name != "dgx-a" || nodes[1].Name != "dgx-b" {
			t.Fatalf("nodes %v; want dgx-a and dgx-b (not the node outside the selector)", nodeNames(nodes))
		}
		for _, g := range nodes[0].GPUs {
			if g.UtilPct == nil || g.TempC == nil || g.PowerW == nil || g.MemUsedMiB == nil || g.MemTotalMiB == nil || !g.Healthy || !strings.Contains(g.Model, "A100") {
				t.Errorf("dgx-a GPU %d: want live utilization, temperature, power, memory of a healthy A100: %s", g.Index, gpuString(g))
			}
		}
		for _, g := range nodes[1].GPUs {
			if g.UtilPct != nil || g.TempC != nil || g.PowerW != nil {
				t.Errorf("dgx-b GPU %d: its agent does not answer, yet it shows live figures: %s", g.Index, gpuString(g))
			}
			if g.MemTotalMiB == nil || !strings.Contains(g.Model, "H100") || !g.Healthy || g.UUID == "" {
				t.Errorf("dgx-b GPU %d: want the inventory's H100, memory and health: %s", g.Index, gpuString(g))
			}
		}
		if len(nodes[0].GPUs) != 8 || len(nodes[1].GPUs) != 8 {
			t.Fatalf("GPUs per node %d, %d; want 8, 8", len(nodes[0].GPUs), len(nodes[1].GPUs))
		}
		t.Logf("dgx-a GPU 0: %s; dgx-b GPU 0: %s", gpuString(nodes[0].GPUs[0]), gpuString(nodes[1].GPUs[0]))

		// Live figures move between polls.
		eventually(t, 10*time.Second, "dgx-a readings change", func() (bool, string) {
			later, err := src.GPUs(ctx)
			if err != nil || len(later) == 0 {
				return false, fmt.Sprint(err)
			}
			changed := 0
			for i, g := range later[0].GPUs {
				if gpuString(g) != gpuString(nodes[0].GPUs[i]) {
					changed++
				}
			}
			return changed >= 4, fmt.Sprintf("%d of 8 changed", changed)
		})

		// A GPU falls off the bus: the page shows it unhealthy, with the
		// reason once the agent has republished its inventory.
		eventually(t, 10*time.Second, "the agent watches GPU 3", func() (bool, string) { return agentA.fake.Watched(3), "" })
		if err := agentA.fake.InjectXID(3, 79); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "GPU 3 unhealthy with its reason", func() (bool, string) {
			n, err := src.GPUs(ctx)
			if err != nil || len(n) == 0 {
				return false, fmt.Sprint(err)
			}
			g := n[0].GPUs[3]
			return !g.Healthy && strings.Contains(g.Reason, "79"), gpuString(g)
		})
	})

	t.Run("jobs", func(t *testing.T) {
		eventually(t, 30*time.Second, "s2st-de-fr runs", func() (bool, string) {
			jobs, err := src.Jobs(ctx)
			if err != nil || len(jobs) == 0 {
				return false, fmt.Sprint(err)
			}
			return jobs[0].Name == "s2st-de-fr" && jobs[0].Phase == "Running", fmt.Sprintf("%+v", jobs)
		})
		// Rank 0 reports progress, as the trainer does.
		body := `{"status":{"step":1200,"loss":2.5}}`
		if err := crd.Patch("application/merge-patch+json").Namespace(jobNS).Resource("trainingjobs").Name("s2st-de-fr").SubResource("status").Body([]byte(body)).Do(ctx).Error(); err != nil {
			t.Fatal(err)
		}
		jobs, err := src.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 2 {
			t.Fatalf("%d jobs; want 2: %+v", len(jobs), jobs)
		}
		run, wait := jobs[0], jobs[1]
		if run.Name != "s2st-de-fr" || run.Phase != "Running" || run.Step != 1200 || run.Steps != 20000 || run.Loss == nil || *run.Loss != 2.5 ||
			run.Workers != 1 || run.GPUsPerWorker != 8 || run.Priority != 10 || len(run.Nodes) != 1 || run.Nodes[0] != "dgx-a" && run.Nodes[0] != "dgx-b" {
			t.Errorf("running job %+v", run)
		}
		if wait.Name != "s2st-100-langs" || wait.Phase != "Pending" || wait.Message == "" || len(wait.Nodes) != 0 {
			t.Errorf("waiting job %+v: want Pending with the scheduler's reason", wait)
		}
		t.Logf("running: %s on %v step %d/%d (%s); waiting: %s (%s)", run.Name, run.Nodes, run.Step, run.Steps, run.Message, wait.Name, wait.Message)
	})

	t.Run("releases", func(t *testing.T) {
		rels, err := src.Releases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rels) != 2 {
			t.Fatalf("%d releases; want 2: %+v", len(rels), rels)
		}
		if r := rels[0]; r.Model != "s2st" || r.Release != 2 || !r.Current || r.MetricName != "concept accuracy" || r.Metric == nil || *r.Metric != 0.71 || !strings.Contains(r.Source, "s2st-de-fr") {
			t.Errorf("newest release %+v", r)
		}
		if r := rels[1]; r.Release != 1 || r.Current {
			t.Errorf("older release %+v", r)
		}
		// Without a store the section says why.
		bare, err := New(cp.Config(), WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bare.Releases(ctx); !errors.Is(err, ErrNoReleases) {
			t.Errorf("releases without a store: %v; want ErrNoReleases", err)
		}
	})

	t.Run("serving", func(t *testing.T) {
		first, err := src.Serving(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if first.Replicas != 2 || first.Release != 2 || first.Model != "s2st" || first.QPS != 0 || first.P99Seconds != nil {
			t.Errorf("first poll %+v: want 2 replicas of s2st release 2, no rate yet", first)
		}
		// 10 s later: 990 fast answers and 6 slow ones on one replica, 4
		// failures on the other.
		servers[0].serve(990, 0.010, "")
		servers[0].serve(6, 1.5, "")
		servers[1].serve(4, 0.020, "INVALID_ARGUMENT")
		clock.add(10 * time.Second)
		got, err := src.Serving(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.QPS < 99.99 || got.QPS > 100.01 {
			t.Errorf("QPS %v; want 1000 requests / 10 s", got.QPS)
		}
		if got.ErrorRatio < 0.00399 || got.ErrorRatio > 0.00401 {
			t.Errorf("error ratio %v; want 4/1000", got.ErrorRatio)
		}
		// The 990th of 1000 answers is in the bucket holding 10 ms and 20
		// ms (8..16 ms and 16..32 ms).
		if got.P99Seconds == nil || *got.P99Seconds < 0.008 || *got.P99Seconds > 0.032 {
			t.Errorf("p99 %v; want within the buckets of the fast answers", ptrString(got.P99Seconds))
		}
		// More slow answers move p99 into the slow bucket (1.024..2.048 s).
		servers[0].serve(30, 1.5, "")
		clock.add(10 * time.Second)
		got, err = src.Serving(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.P99Seconds == nil || *got.P99Seconds < 1.024 || *got.P99Seconds > 2.048 {
			t.Errorf("p99 %v after 30 more slow answers; want in 1.024..2.048 s", ptrString(got.P99Seconds))
		}
		t.Logf("serving: %.1f QPS, p99 %s, errors %.2f%%, %d replicas, %s release %d", got.QPS, ptrString(got.P99Seconds), 100*got.ErrorRatio, got.Replicas, got.Model, got.Release)
	})

	t.Run("page state", func(t *testing.T) {
		h, err := dashboard.New(src, dashboard.WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st dashboard.State
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		gpus := 0
		for _, n := range st.Nodes {
			gpus += len(n.GPUs)
		}
		if len(st.Errors) != 0 || gpus != 16 || len(st.Jobs) != 2 || len(st.Releases) != 2 || st.Serving == nil || st.Serving.Replicas != 2 {
			t.Errorf("api/state: errors %v, %d GPUs, %d jobs, %d releases, serving %+v", st.Errors, gpus, len(st.Jobs), len(st.Releases), st.Serving)
		}
	})
}

func nodeNames(nodes []dashboard.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

func ptrString(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.4g", *v)
}

func gpuString(g dashboard.GPU) string {
	return fmt.Sprintf("%d %s util %s mem %s/%s temp %s power %s healthy %v %s", g.Index, g.Model, ptrString(g.UtilPct),
		ptrString(g.MemUsedMiB), ptrString(g.MemTotalMiB), ptrString(g.TempC), ptrString(g.PowerW), g.Healthy, g.Reason)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeServing serves /metrics with the serving tier's series (names,
// labels and latency buckets of package serving), driven by the test.
type fakeServing struct {
	addr     string
	release  string
	success  *prometheus.CounterVec
	failure  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newFakeServing(t *testing.T, release string) *fakeServing {
	t.Helper()
	const ns, sub = "babelfish", "serving"
	fs := &fakeServing{
		release:  release,
		success:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "request_success_total"}, []string{"release", "method"}),
		failure:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "request_failure_total"}, []string{"release", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"release", "method"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "release_info"}, []string{"release"})
	info.WithLabelValues("s2st/releases/1").Set(0)
	info.WithLabelValues(release).Set(1)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(fs.success, fs.failure, fs.duration, info)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	fs.addr = strings.TrimPrefix(srv.URL, "http://")
	return fs
}

// serve records n answers that took sec each; code "" is success.
func (fs *fakeServing) serve(n int, sec float64, code string) {
	for range n {
		fs.duration.WithLabelValues(fs.release, "Translate").Observe(sec)
		if code == "" {
			fs.success.WithLabelValues(fs.release, "Translate").Inc()
		} else {
			fs.failure.WithLabelValues(fs.release, "Translate", code).Inc()
		}
	}
}

func newStore(t *testing.T) *objstore.Client { return fixture.Store(t, testenv.MinIOForTest(t)) }

// tinyModel is a small randomly initialised model; seed changes its
// weights.
func tinyModel(t *testing.T, seed uint64) *model.Model {
	return fixture.TinyModel(t, []string{"de", "en", "fr"}, seed, 2)
}

// writeCheckpoint commits a checkpoint as the trainer lays it out.
func writeCheckpoint(t *testing.T, st *objstore.Client, job string, step int64, m *model.Model, eval map[string]float64) string {
	return fixture.WriteCheckpoint(t, st, job, step, m, map[string]any{"loss": 1.5, "eval": eval})
}
