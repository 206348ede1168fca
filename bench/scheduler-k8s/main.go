package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/scheduler/controller"
)

type params struct {
	nodes, gpus, jobs, workers, rounds, parallelism int
	qps                                             float64
	crds                                            string
	timeout                                         time.Duration
}

// logLevel of the scheduler under test; -v shows its passes.
var logLevel = slog.LevelWarn

func main() {
	var p params
	verbose := flag.Bool("v", false, "log the scheduler's passes")
	flag.IntVar(&p.nodes, "nodes", 200, "GPU nodes registered")
	flag.IntVar(&p.gpus, "gpus", 8, "GPUs per node")
	flag.IntVar(&p.jobs, "jobs", 250, "TrainingJobs per round")
	flag.IntVar(&p.workers, "workers", 4, "workers per job (1 GPU each)")
	flag.IntVar(&p.rounds, "rounds", 3, "rounds of each side; the median is reported")
	flag.IntVar(&p.parallelism, "parallelism", controller.DefaultParallelism, "gangs submitted at once, on both sides")
	flag.Float64Var(&p.qps, "qps", 2000, "client-side API rate limit, on both sides")
	flag.StringVar(&p.crds, "crds", "charts/babelfish/crds", "CRD directory")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "limit of one round")
	flag.Parse()
	if *verbose {
		logLevel = slog.LevelDebug
	}
	if err := p.validate(); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, p); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench scheduler-k8s:", err)
	os.Exit(1)
}

func (p *params) validate() error {
	switch {
	case p.nodes < 1 || p.gpus < 1 || p.gpus > inventory.MaxGPUs:
		return fmt.Errorf("-nodes %d -gpus %d: want >= 1 node and 1..%d GPUs", p.nodes, p.gpus, inventory.MaxGPUs)
	case p.jobs < 1 || p.workers < 1 || p.workers > v1alpha1.MaxWorkers:
		return fmt.Errorf("-jobs %d -workers %d: want >= 1 job and 1..%d workers", p.jobs, p.workers, v1alpha1.MaxWorkers)
	case p.jobs*p.workers > p.nodes*p.gpus:
		return fmt.Errorf("-jobs %d x -workers %d: more GPUs than the %d nodes x %d GPUs have", p.jobs, p.workers, p.nodes, p.gpus)
	case p.rounds < 1 || p.parallelism < 1 || p.qps <= 0:
		return fmt.Errorf("-rounds %d -parallelism %d -qps %g: must be > 0", p.rounds, p.parallelism, p.qps)
	}
	return nil
}

type clients struct {
	cfg *rest.Config
	cs  kubernetes.Interface // protobuf, as the scheduler's
	c   client.Client
}

func run(ctx context.Context, p params) error {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cp, err := testenv.StartControlPlane(ctx, testenv.WithCRDDirs(p.crds), testenv.WithLogger(quiet))
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	cfg := cp.Config()
	cfg.QPS, cfg.Burst = float32(p.qps), int(p.qps)*2
	// Every request either side sends, counted at the transport.
	requests := &atomic.Int64{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{rt, requests} })
	cl := clients{cfg: cfg}
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	if cl.cs, err = kubernetes.NewForConfig(pcfg); err != nil {
		return err
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}
	if cl.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	began := time.Now()
	nodes, err := registerNodes(ctx, cl.cs, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench scheduler-k8s: %d nodes x %d GPUs registered in %.1fs\n", p.nodes, p.gpus, time.Since(began).Seconds())

	var ours, base, oursReq, baseReq, oursCPU, baseCPU []float64
	for r := range p.rounds {
		// Alternate which side goes first, so drift in the machine's load
		// falls on both.
		sides := []func() error{
			func() error {
				c0 := cpuSeconds()
				v, n, err := baseline(ctx, cl, p, nodes, r, requests)
				baseCPU = append(baseCPU, cpuSeconds()-c0)
				base = append(base, v)
				baseReq = append(baseReq, n)
				return err
			},
			func() error {
				c0 := cpuSeconds()
				v, n, err := scheduled(ctx, cl, p, r, requests)
				oursCPU = append(oursCPU, cpuSeconds()-c0)
				ours = append(ours, v)
				oursReq = append(oursReq, n)
				return err
			},
		}
		if r%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "bench scheduler-k8s: round %d: scheduler %.0f pods/s (%.2f requests/pod, client CPU %.1fs), baseline %.0f pods/s (%.2f requests/pod, client CPU %.1fs)\n",
			r+1, ours[r], oursReq[r], oursCPU[r], base[r], baseReq[r], baseCPU[r])
	}
	ratios := make([]float64, len(ours))
	for i := range ours {
		ratios[i] = ours[i] / base[i]
	}
	o, b := median(ours), median(base)
	fmt.Printf("bench scheduler-k8s pods_bound_per_s=%.0f baseline_pods_bound_per_s=%.0f ratio=%.3f ratio_min=%.3f ratio_max=%.3f requests_per_pod=%.2f baseline_requests_per_pod=%.2f nodes=%d gpus_per_node=%d jobs=%d workers=%d pods=%d rounds=%d parallelism=%d\n",
		o, b, median(ratios), slices.Min(ratios), slices.Max(ratios), median(oursReq), median(baseReq),
		p.nodes, p.gpus, p.jobs, p.workers, p.jobs*p.workers, p.rounds, p.parallelism)
	return nil
}

// cpuSeconds is the CPU this process (clients, and the scheduler when it
// runs) has used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// countingRT counts requests.
type countingRT struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// registerNodes registers the GPU nodes with the GPU agent's inventory.
func registerNodes(ctx context.Context, cs kubernetes.Interface, p params) ([]string, error) {
	names := make([]string, p.nodes)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range p.nodes {
		names[i] = fmt.Sprintf("gpu-node-%03d", i)
		g.Go(func() error {
			if _, err := testenv.RegisterGPUNode(ctx, cs, names[i], p.gpus, nil); err != nil {
				return err
			}
			inv := &inventory.Inventory{Version: inventory.Version, Node: names[i], Updated: time.Now().UTC()}
			for k := range p.gpus {
				inv.GPUs = append(inv.GPUs, inventory.GPU{Index: k, UUID: fmt.Sprintf("GPU-%d-%d", i, k), Model: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, Healthy: true})
			}
			raw, err := inventory.Encode(inv)
			if err != nil {
				return err
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, inventory.Annotation, raw)
			_, err = cs.CoreV1().Nodes().Patch(ctx, names[i], types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		})
	}
	return names, g.Wait()
}

func namespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// cleanup force-deletes a round's pods (no kubelet would ever finish a
// graceful deletion) so that the next round finds the GPUs free.
func cleanup(ctx context.Context, cl clients, ns string) error {
	zero := int64(0)
	if err := cl.c.DeleteAllOf(ctx, &v1alpha1.TrainingJob{}, client.InNamespace(ns)); err != nil {
		return err
	}
	if err := cl.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		return err
	}
	for {
		l, err := cl.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil || len(l.Items) == 0 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// baseline creates and binds the very pods the scheduler makes, with
// plain client-go and the scheduler's gang pattern (a gang's pods created
// in parallel, then bound in parallel; gangs in parallel), placed
// round-robin with no scheduling decision, no status, no Service, no
// Event.
func baseline(ctx context.Context, cl clients, p params, nodes []string, round int, requests *atomic.Int64) (rate, perPod float64, err error) {
	ns := fmt.Sprintf("baseline-%d", round)
	if err := namespace(ctx, cl.cs, ns); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	grace := int64(controller.DefaultPodGracePeriod / time.Second)
	n0 := requests.Load()
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.parallelism)
	slot := 0
	for j := range p.jobs {
		job := benchJob(ns, j, p.workers)
		job.UID = types.UID(fmt.Sprintf("baseline-%d-%d", round, j))
		place := make([]v1alpha1.WorkerPlacement, p.workers)
		for w := range place {
			place[w] = v1alpha1.WorkerPlacement{Rank: int32(w), Node: nodes[slot/p.gpus%len(nodes)], GPUs: []int32{int32(slot % p.gpus)}, GPUMilli: 1000}
			slot++
		}
		g.Go(func() error {
			pods := make([]*corev1.Pod, p.workers)
			errs := make([]error, p.workers)
			var wg sync.WaitGroup
			for w := range pods {
				want, err := controller.WorkerPod(job, 1, place[w], "none", grace)
				if err != nil {
					return err
				}
				wg.Go(func() { pods[w], errs[w] = cl.cs.CoreV1().Pods(ns).Create(gctx, want, metav1.CreateOptions{}) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			for w, pod := range pods {
				wg.Go(func() {
					errs[w] = cl.cs.CoreV1().Pods(ns).Bind(gctx, &corev1.Binding{
						ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns, UID: pod.UID},
						Target:     corev1.ObjectReference{Kind: "Node", Name: place[w].Node},
					}, metav1.CreateOptions{})
				})
			}
			wg.Wait()
			return errors.Join(errs...)
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, fmt.Errorf("baseline round %d: %w", round, err)
	}
	pods := float64(p.jobs * p.workers)
	rate = pods / time.Since(began).Seconds()
	perPod = float64(requests.Load()-n0) / pods
	return rate, perPod, cleanup(context.WithoutCancel(ctx), cl, ns)
}

func benchJob(ns string, j, workers int) *v1alpha1.TrainingJob {
	return &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-%d", j), Namespace: ns},
		Spec: v1alpha1.TrainingJobSpec{
			Dataset:       v1alpha1.DatasetRef{Name: "cldr-phrases", Version: "v1"},
			Model:         v1alpha1.ModelConfig{Languages: []string{"en", "fr"}, Steps: 1000},
			Workers:       int32(workers),
			GPUsPerWorker: 1,
			Template:      v1alpha1.WorkerTemplate{Image: "babelfish:bench"},
		},
	}
}

// scheduled creates the TrainingJobs with no scheduler running, then
// starts one and times it from start to the last pod bound.
func scheduled(ctx context.Context, cl clients, p params, round int, requests *atomic.Int64) (rate, perPod float64, err error) {
	ns := fmt.Sprintf("scheduled-%d", round)
	if err := namespace(ctx, cl.cs, ns); err != nil {
		return 0, 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for j := range p.jobs {
		g.Go(func() error {
			return cl.c.Create(gctx, benchJob(ns, j, p.workers))
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}

	want := int64(p.jobs * p.workers)
	var bound atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	var passErr atomic.Value
	s, err := controller.New(cl.cfg, controller.Options{
		Namespace:   ns,
		Parallelism: p.parallelism,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})),
		AfterPass: func(st controller.PassStats) {
			if st.Err != nil {
				passErr.Store(st.Err)
			}
			if bound.Add(int64(st.PodsBound)) >= want {
				once.Do(func() { close(done) })
			}
		},
	})
	if err != nil {
		return 0, 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	n0 := requests.Load()
	began := time.Now()
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(rctx) }()
	select {
	case <-done:
	case <-rctx.Done():
		return 0, 0, fmt.Errorf("scheduled round %d: %d of %d pods bound before %v (last pass error: %v)", round, bound.Load(), want, p.timeout, passErr.Load())
	}
	elapsed := time.Since(began)
	perPod = float64(requests.Load()-n0) / float64(want)
	cancel()
	if err := <-runDone; err != nil {
		return 0, 0, err
	}
	// Check what the passes reported against the API server.
	l, err := cl.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	n := 0
	for _, pod := range l.Items {
		if pod.Spec.NodeName != "" {
			n++
		}
	}
	if int64(n) != want || len(l.Items) != int(want) {
		return 0, 0, fmt.Errorf("scheduled round %d: %d pods, %d bound; want %d", round, len(l.Items), n, want)
	}
	return float64(want) / elapsed.Seconds(), perPod, cleanup(ctx, cl, ns)
}
