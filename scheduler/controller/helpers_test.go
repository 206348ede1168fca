package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/nvml/inventory"
)

// crdDir holds the CRDs generated from api/v1alpha1.
const crdDir = "../../charts/babelfish/crds"

// env is one control plane shared by the tests that need the API server.
type env struct {
	cfg *rest.Config
	cs  kubernetes.Interface
	c   *crdClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cp := testenv.ControlPlaneForTest(t, testenv.WithCRDDirs(crdDir))
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cp.Config()
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := newCRDClient(cfg, scheme)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, cs: cs, c: c}
}

// pool is a test's own namespace and nodes, so tests sharing a control
// plane never see each other's work.
type pool struct {
	e      *env
	t      *testing.T
	ns     string
	label  string // node label key=value of the pool
	queues []string
}

func (e *env) pool(t *testing.T, name string) *pool {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &pool{e: e, t: t, ns: name, label: "babelfish.dev/test-pool=" + name}
}

// gpuSpec is one GPU of a node's inventory.
type gpuSpec struct {
	healthy bool
	island  int
}

func healthyGPUs(n int) []gpuSpec {
	out := make([]gpuSpec, n)
	for i := range out {
		out[i].healthy = true
	}
	return out
}

// node registers a GPU node in the pool with the GPU agent's inventory.
func (p *pool) node(name string, gpus []gpuSpec) {
	p.t.Helper()
	ctx := p.t.Context()
	_, err := testenv.RegisterGPUNode(ctx, p.e.cs, name, len(gpus), map[string]string{"babelfish.dev/test-pool": p.ns})
	if err != nil {
		p.t.Fatal(err)
	}
	p.setInventory(name, gpus)
}

func (p *pool) setInventory(name string, gpus []gpuSpec) {
	p.t.Helper()
	inv := &inventory.Inventory{Version: inventory.Version, Node: name, Updated: time.Now().UTC()}
	for i, g := range gpus {
		ig := inventory.GPU{Index: i, UUID: fmt.Sprintf("GPU-%s-%d", name, i), Model: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920, Healthy: g.healthy, Island: g.island}
		if !g.healthy {
			ig.Reason = "xid 79"
		}
		inv.GPUs = append(inv.GPUs, ig)
	}
	raw, err := inventory.Encode(inv)
	if err != nil {
		p.t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, inventory.Annotation, string(raw))
	if _, err := p.e.cs.CoreV1().Nodes().Patch(p.t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		p.t.Fatal(err)
	}
}

// queue creates a Queue; borrow < 0 means no borrowing limit.
func (p *pool) queue(name string, nominalGPUs, weight int32, borrowMilli int64) {
	p.t.Helper()
	q := &v1alpha1.Queue{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.QueueSpec{NominalGPUs: &nominalGPUs, Weight: weight}}
	if borrowMilli >= 0 {
		q.Spec.BorrowingLimitGPUMilli = &borrowMilli
	}
	if err := p.e.c.create(p.t.Context(), resQueues, "", q); err != nil {
		p.t.Fatal(err)
	}
	p.queues = append(p.queues, name)
}

type jobOpt func(*v1alpha1.TrainingJob)

func inQueue(q string) jobOpt     { return func(j *v1alpha1.TrainingJob) { j.Spec.Queue = q } }
func priority(n int32) jobOpt     { return func(j *v1alpha1.TrainingJob) { j.Spec.Priority = n } }
func backoffLimit(n int32) jobOpt { return func(j *v1alpha1.TrainingJob) { j.Spec.BackoffLimit = &n } }
func gpuMilli(n int32) jobOpt     { return func(j *v1alpha1.TrainingJob) { j.Spec.GPUMilli = &n } }
func withCPU(q string) jobOpt {
	return func(j *v1alpha1.TrainingJob) { c := resource.MustParse(q); j.Spec.Template.Resources.CPU = &c }
}
func withEnv(k, v string) jobOpt {
	return func(j *v1alpha1.TrainingJob) {
		j.Spec.Template.Env = append(j.Spec.Template.Env, corev1.EnvVar{Name: k, Value: v})
	}
}

// job creates a TrainingJob of workers ranks with gpus GPUs each.
func (p *pool) job(name string, workers, gpus int32, opts ...jobOpt) *v1alpha1.TrainingJob {
	p.t.Helper()
	j := &v1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns},
		Spec: v1alpha1.TrainingJobSpec{
			Dataset:       v1alpha1.DatasetRef{Name: "cldr-phrases", Version: "v1"},
			Model:         v1alpha1.ModelConfig{Languages: []string{"en", "fr"}, Steps: 1000},
			Workers:       workers,
			GPUsPerWorker: gpus,
			Template:      v1alpha1.WorkerTemplate{Image: "babelfish:test"},
		},
	}
	for _, o := range opts {
		o(j)
	}
	if err := p.e.c.create(p.t.Context(), resTrainingJobs, p.ns, j); err != nil {
		p.t.Fatal(err)
	}
	return j
}

func (p *pool) getJob(name string) *v1alpha1.TrainingJob {
	p.t.Helper()
	var j v1alpha1.TrainingJob
	if err := p.e.c.get(p.t.Context(), resTrainingJobs, p.ns, name, &j); err != nil {
		p.t.Fatal(err)
	}
	return &j
}

// trainerStatus writes the trainer's fields of a job's status, as rank 0
// would.
func (p *pool) trainerStatus(name string, step int64, ckptStep int64, ckptAt time.Time) {
	p.t.Helper()
	body := fmt.Sprintf(`{"status":{"step":%d,"loss":0.5,"latestCheckpoint":{"step":%d,"path":"checkpoints/%s/%d/","time":%q}}}`,
		step, ckptStep, name, ckptStep, ckptAt.UTC().Format(time.RFC3339))
	if err := p.e.c.patchStatus(p.t.Context(), resTrainingJobs, p.ns, name, []byte(body)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pool) pods() []corev1.Pod {
	p.t.Helper()
	l, err := p.e.cs.CoreV1().Pods(p.ns).List(context.WithoutCancel(p.t.Context()), metav1.ListOptions{LabelSelector: LabelJob})
	if err != nil {
		p.t.Fatal(err)
	}
	return l.Items
}

// jobPods lists the pods of one job, by name.
func (p *pool) jobPods(job string) []corev1.Pod {
	p.t.Helper()
	var out []corev1.Pod
	for _, pod := range p.pods() {
		if pod.Labels[LabelJob] == job {
			out = append(out, pod)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return compareStrings(a.Name, b.Name) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// bound reports whether a pod counts as a bound rank of its gang: bound
// and not being deleted, whatever its phase (a rank that failed is still
// part of the gang until the scheduler tears the gang down).
func bound(p *corev1.Pod) bool { return p.Spec.NodeName != "" && p.DeletionTimestamp == nil }

// jobInfo is what the invariants need of a job.
type jobInfo struct {
	workers  int32
	terminal bool
}

// checkInvariants fails when the world breaks a promise of the scheduler:
// a job that is not over with some but not all ranks bound, two live pods
// of one rank, or a GPU given beyond its capacity to pods that still run
// or are still shutting down.
func checkInvariants(pods []corev1.Pod, jobs map[string]jobInfo) error {
	boundRanks := map[string]int32{}
	ranks := map[string]int{}
	gpuUse := map[string]int{}
	var errs []error
	for i := range pods {
		p := &pods[i]
		job := p.Labels[LabelJob]
		if bound(p) {
			boundRanks[job]++
			k := job + "/" + p.Labels[LabelRank]
			if ranks[k]++; ranks[k] > 1 {
				errs = append(errs, fmt.Errorf("job %s rank %s: two live pods", job, p.Labels[LabelRank]))
			}
		}
		if p.Spec.NodeName == "" || podTerminal(p) {
			continue
		}
		idx, _ := parseGPUs(p.Annotations[AnnotationGPUs])
		milli, _ := strconv.Atoi(p.Annotations[AnnotationGPUMilli])
		for _, g := range idx {
			k := fmt.Sprintf("%s/%d", p.Spec.NodeName, g)
			if gpuUse[k] += milli; gpuUse[k] > 1000 {
				errs = append(errs, fmt.Errorf("gpu %s: %d milli given out (pod %s)", k, gpuUse[k], p.Name))
			}
		}
	}
	for job, n := range boundRanks {
		if ji, ok := jobs[job]; ok && !ji.terminal && n != ji.workers {
			errs = append(errs, fmt.Errorf("job %s: %d of %d ranks bound", job, n, ji.workers))
		}
	}
	return errors.Join(errs...)
}

// runner runs a scheduler for a test and checks the invariants after
// every pass.
type runner struct {
	p      *pool
	s      *Scheduler
	cancel context.CancelFunc
	done   chan error
	once   sync.Once

	mu         sync.Mutex
	passes     int
	violations []error
}

func (p *pool) start(o Options) *runner {
	p.t.Helper()
	o.Namespace = p.ns
	o.NodeSelector = p.label
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{p.t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.GracePeriod == 0 {
		o.GracePeriod = 5 * time.Second
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = time.Second
	}
	if o.Resync == 0 {
		o.Resync = 2 * time.Second
	}
	r := &runner{p: p, done: make(chan error, 1)}
	user := o.AfterPass
	o.AfterPass = func(st PassStats) {
		if err := checkInvariants(p.pods(), p.jobInfos()); err != nil {
			r.mu.Lock()
			r.violations = append(r.violations, fmt.Errorf("after pass %d: %w", st.Pass, err))
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.passes++
		r.mu.Unlock()
		if user != nil {
			user(st)
		}
	}
	s, err := New(p.e.cfg, o)
	if err != nil {
		p.t.Fatal(err)
	}
	r.s = s
	ctx, cancel := context.WithCancel(context.WithoutCancel(p.t.Context()))
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	p.t.Cleanup(func() { r.stop() })
	return r
}

// stop stops the scheduler and waits for it; safe to call twice.
func (r *runner) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.p.t.Errorf("scheduler: %v", err)
			}
		case <-time.After(30 * time.Second):
			r.p.t.Errorf("scheduler did not stop within 30s")
		}
	})
}

// check fails the test if any pass that ran to its end left the world
// broken.
func (r *runner) check() {
	r.p.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		r.p.t.Error(v)
	}
}

func (p *pool) jobInfos() map[string]jobInfo {
	var l v1alpha1.TrainingJobList
	if err := p.e.c.list(context.WithoutCancel(p.t.Context()), resTrainingJobs, p.ns, &l); err != nil {
		p.t.Fatal(err)
	}
	out := map[string]jobInfo{}
	for _, j := range l.Items {
		out[j.Name] = jobInfo{workers: j.Spec.Workers, terminal: j.Status.Phase.Terminal()}
	}
	return out
}

// kubelet plays the kubelets of the pool's nodes: bound pods start
// running, and deleted pods exit (recording the grace they were given).
type kubelet struct {
	p      *pool
	mu     sync.Mutex
	graces map[string]int64 // pod name -> deletion grace seconds seen
	run    bool             // start bound pods
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *pool) kubelet(run bool) *kubelet {
	k := &kubelet{p: p, graces: map[string]int64{}, run: run, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.WithoutCancel(p.t.Context()))
	k.cancel = cancel
	go k.loop(ctx)
	p.t.Cleanup(k.stop)
	return k
}

func (k *kubelet) stop() {
	k.cancel()
	<-k.done
}

func (k *kubelet) loop(ctx context.Context) {
	defer close(k.done)
	cs := k.p.e.cs
	for ctx.Err() == nil {
		l, err := cs.CoreV1().Pods(k.p.ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range l.Items {
				pod := &l.Items[i]
				switch {
				case pod.DeletionTimestamp != nil:
					k.mu.Lock()
					if pod.DeletionGracePeriodSeconds != nil {
						k.graces[pod.Name] = *pod.DeletionGracePeriodSeconds
					}
					k.mu.Unlock()
					zero := int64(0)
					_ = cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
				case k.run && pod.Spec.NodeName != "" && pod.Status.Phase == corev1.PodPending:
					setPhase(ctx, cs, pod, corev1.PodRunning, 0)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (k *kubelet) grace(pod string) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	g, ok := k.graces[pod]
	return g, ok
}

// setPhase writes a pod's phase as its kubelet would; a finished
// container gets the exit code.
func setPhase(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, phase corev1.PodPhase, exit int32) error {
	cur, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Status.Phase = phase
	state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	if phase == corev1.PodFailed || phase == corev1.PodSucceeded {
		reason := "Completed"
		if exit != 0 {
			reason = "Error"
		}
		state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, FinishedAt: metav1.Now()}}
	}
	cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName, Image: "babelfish:test", State: state, Ready: phase == corev1.PodRunning}}
	_, err = cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return setPhase(ctx, cs, pod, phase, exit)
	}
	return err
}

// eventually polls cond until it holds or the timeout passes.
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

// phases returns each job's phase.
func (p *pool) phases() map[string]v1alpha1.TrainingJobPhase {
	var l v1alpha1.TrainingJobList
	if err := p.e.c.list(p.t.Context(), resTrainingJobs, p.ns, &l); err != nil {
		p.t.Fatal(err)
	}
	out := map[string]v1alpha1.TrainingJobPhase{}
	for _, j := range l.Items {
		out[j.Name] = j.Status.Phase
	}
	return out
}

// events lists the reasons of the Events about a job.
func (p *pool) events(job string) []string {
	p.t.Helper()
	l, err := p.e.cs.EventsV1().Events(p.ns).List(p.t.Context(), metav1.ListOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		if e.Regarding.Name == job && e.Regarding.Kind == "TrainingJob" {
			out = append(out, e.Reason)
		}
	}
	return out
}

func podEnv(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		out[e.Name] = e.Value
	}
	return out
}

// testWriter sends slog lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}
