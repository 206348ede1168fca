package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// GPUResource is the extended resource NVIDIA's device plugin advertises, and
// the one Babelfish schedules on.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

const (
	defaultStartTimeout = 60 * time.Second
	defaultStopTimeout  = 20 * time.Second
	// outputTail bounds how much apiserver/etcd output is kept to explain a
	// failed start.
	outputTail = 8 << 10
)

// ControlPlane is a real kube-apiserver backed by a real etcd, both listening
// on loopback, started from the tools cache through controller-runtime's
// envtest. Each one has its own ports and data directory, so several test
// packages may run one each at the same time.
type ControlPlane struct {
	env       *envtest.Environment
	cfg       *rest.Config
	clientset kubernetes.Interface
	dir       string // holds the kubeconfig file
	startup   time.Duration
	log       *slog.Logger

	kubeconfigOnce sync.Once
	kubeconfigPath string
	kubeconfigErr  error

	stopOnce sync.Once
	stopErr  error
}

type controlPlaneConfig struct {
	crdDirs      []string
	crds         []*apiextensionsv1.CustomResourceDefinition
	startTimeout time.Duration
	stopTimeout  time.Duration
	output       io.Writer
	log          *slog.Logger
	apiArgs      map[string][]string
}

// ControlPlaneOption configures StartControlPlane.
type ControlPlaneOption func(*controlPlaneConfig)

// WithCRDDirs installs every CustomResourceDefinition found in the given
// directories (YAML or JSON manifests) before StartControlPlane returns, and
// waits until the API server serves them. A directory that does not exist is
// an error.
func WithCRDDirs(dirs ...string) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.crdDirs = append(c.crdDirs, dirs...) }
}

// WithCRDs installs the given CustomResourceDefinitions, as WithCRDDirs does.
func WithCRDs(crds ...*apiextensionsv1.CustomResourceDefinition) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.crds = append(c.crds, crds...) }
}

// WithStartTimeout bounds how long each of etcd and kube-apiserver may take
// to become healthy (default 60s; a context deadline that comes sooner wins).
func WithStartTimeout(d time.Duration) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.startTimeout = d }
}

// WithStopTimeout bounds how long each process may take to exit on Stop
// before it is killed (default 20s).
func WithStopTimeout(d time.Duration) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.stopTimeout = d }
}

// WithOutput copies the stdout and stderr of etcd and kube-apiserver to w,
// for debugging. Without it only the last few KiB are kept, to explain a
// failed start.
func WithOutput(w io.Writer) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.output = w }
}

// WithLogger sets the logger for the control plane's own messages (default
// slog.Default()).
func WithLogger(l *slog.Logger) ControlPlaneOption {
	return func(c *controlPlaneConfig) { c.log = l }
}

// WithAPIServerFlag sets a kube-apiserver command-line flag (without the
// leading dashes), replacing envtest's default for it, e.g.
// WithAPIServerFlag("feature-gates", "SomeGate=true").
func WithAPIServerFlag(name string, values ...string) ControlPlaneOption {
	return func(c *controlPlaneConfig) {
		if c.apiArgs == nil {
			c.apiArgs = map[string][]string{}
		}
		c.apiArgs[name] = values
	}
}

// StartControlPlane starts etcd and kube-apiserver from the tools cache
// (ToolsDir()/bin) and returns once the API server answers as an admin user
// (group system:masters) and every requested CRD is served. Call Stop when
// done. When a binary is missing it starts nothing and returns an error that
// says to run `make tools`.
//
// envtest's start is not interruptible: ctx is checked before and after it,
// and its deadline, if any, shortens the start timeout.
func StartControlPlane(ctx context.Context, opts ...ControlPlaneOption) (*ControlPlane, error) {
	c := controlPlaneConfig{
		startTimeout: defaultStartTimeout,
		stopTimeout:  defaultStopTimeout,
		log:          slog.Default(),
	}
	for _, o := range opts {
		o(&c)
	}
	if c.startTimeout <= 0 {
		return nil, fmt.Errorf("testenv: control plane start timeout is %v: it must be > 0", c.startTimeout)
	}
	if c.stopTimeout <= 0 {
		return nil, fmt.Errorf("testenv: control plane stop timeout is %v: it must be > 0", c.stopTimeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("testenv: start control plane: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < c.startTimeout {
			c.startTimeout = left
		}
	}

	apiserver, err := Tool("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd, err := Tool("etcd")
	if err != nil {
		return nil, err
	}
	// Checked here so that a typo fails before two processes start.
	for _, d := range c.crdDirs {
		info, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("testenv: CRD directory: %w", err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("testenv: CRD directory %q is not a directory", d)
		}
	}
	for i, crd := range c.crds {
		if crd == nil {
			return nil, fmt.Errorf("testenv: CRD %d of %d is nil", i, len(c.crds))
		}
	}

	dir, err := os.MkdirTemp("", "babelfish-controlplane-")
	if err != nil {
		return nil, fmt.Errorf("testenv: control plane temp dir: %w", err)
	}

	tail := &tailWriter{max: outputTail}
	var out io.Writer = tail
	if c.output != nil {
		out = io.MultiWriter(tail, c.output)
	}
	useExisting := false
	env := &envtest.Environment{
		// The tools cache is the only source of binaries: no downloads, no
		// KUBEBUILDER_ASSETS, no existing cluster from USE_EXISTING_CLUSTER.
		BinaryAssetsDirectory:    filepath.Dir(apiserver),
		UseExistingCluster:       &useExisting,
		CRDDirectoryPaths:        c.crdDirs,
		CRDs:                     c.crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: c.startTimeout,
		ControlPlaneStopTimeout:  c.stopTimeout,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: apiserver, Out: out, Err: out},
			Etcd:      &envtest.Etcd{Path: etcd, Out: out, Err: out},
		},
	}
	if kubectl, err := Tool("kubectl"); err == nil {
		env.ControlPlane.KubectlPath = kubectl
	}
	if len(c.apiArgs) > 0 {
		args := env.ControlPlane.APIServer.Configure()
		for name, values := range c.apiArgs {
			args.Set(name, values...)
		}
	}

	began := time.Now()
	cfg, err := env.Start()
	if err != nil {
		// envtest may fail after etcd or the apiserver came up (say, a bad
		// CRD): stop whatever runs so no process outlives the error.
		stopErr := env.Stop()
		_ = os.RemoveAll(dir)
		return nil, errors.Join(
			fmt.Errorf("testenv: start control plane (kube-apiserver %s, etcd %s): %w\n--- last output ---\n%s", apiserver, etcd, err, tail.String()),
			stopErr)
	}
	cp := &ControlPlane{env: env, cfg: cfg, dir: dir, startup: time.Since(began), log: c.log}
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(fmt.Errorf("testenv: start control plane: %w", err), cp.Stop())
	}
	cp.clientset, err = kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("testenv: clientset for control plane: %w", err), cp.Stop())
	}
	c.log.Info("control plane ready", "host", cfg.Host, "startup", cp.startup.Round(time.Millisecond), "crds", len(env.CRDs))
	return cp, nil
}

// ControlPlaneForTest starts a control plane for t, stops it when t ends, and
// fails t (never skips) when it cannot start, e.g. because `make tools` has
// not been run. Its messages go to t.Log unless WithLogger says otherwise.
func ControlPlaneForTest(t testing.TB, opts ...ControlPlaneOption) *ControlPlane {
	t.Helper()
	base := []ControlPlaneOption{WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil)))}
	cp, err := StartControlPlane(t.Context(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

// Config returns a copy of the admin REST config (client certificate, the
// server's CA, loopback URL).
func (cp *ControlPlane) Config() *rest.Config { return rest.CopyConfig(cp.cfg) }

// Clientset returns a clientset authenticated as admin.
func (cp *ControlPlane) Clientset() kubernetes.Interface { return cp.clientset }

// Host returns the API server's URL, e.g. https://127.0.0.1:PORT/.
func (cp *ControlPlane) Host() string { return cp.cfg.Host }

// StartupDuration is how long etcd and kube-apiserver took to become ready,
// CRDs included.
func (cp *ControlPlane) StartupDuration() time.Duration { return cp.startup }

// CRDs returns the CustomResourceDefinitions that were installed at start.
func (cp *ControlPlane) CRDs() []*apiextensionsv1.CustomResourceDefinition {
	return cp.env.CRDs
}

// Kubeconfig writes a kubeconfig file for the admin user (certificates
// embedded, so it stands alone) once, and returns its path, for kubectl and
// helm. The file goes away with Stop.
func (cp *ControlPlane) Kubeconfig() (string, error) {
	cp.kubeconfigOnce.Do(func() {
		p := filepath.Join(cp.dir, "kubeconfig")
		if err := os.WriteFile(p, cp.env.KubeConfig, 0o600); err != nil {
			cp.kubeconfigErr = fmt.Errorf("testenv: write kubeconfig: %w", err)
			return
		}
		cp.kubeconfigPath = p
	})
	return cp.kubeconfigPath, cp.kubeconfigErr
}

// Stop stops kube-apiserver and etcd and removes their data. It is safe to
// call more than once; later calls return the first call's result.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		began := time.Now()
		err := cp.env.Stop()
		if rmErr := os.RemoveAll(cp.dir); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		if err != nil {
			cp.stopErr = fmt.Errorf("testenv: stop control plane: %w", err)
		}
		cp.log.Info("control plane stopped", "took", time.Since(began).Round(time.Millisecond))
	})
	return cp.stopErr
}

// GPU nodes get CPU and memory in proportion to their GPUs, roughly as DGX
// machines have, so CPU or memory requests never starve a GPU on them.
const (
	cpuPerGPU       = 12
	memoryPerGPUGiB = 120
	minNodeCPU      = 4
	minNodeMemGiB   = 16
	podsPerNode     = 110
)

type nodeConfig struct {
	cpu, memory *resource.Quantity
	taints      []corev1.Taint
	notReady    bool
}

// NodeOption configures RegisterGPUNode.
type NodeOption func(*nodeConfig)

// WithNodeCPU overrides the node's CPU capacity.
func WithNodeCPU(q resource.Quantity) NodeOption {
	return func(c *nodeConfig) { c.cpu = &q }
}

// WithNodeMemory overrides the node's memory capacity.
func WithNodeMemory(q resource.Quantity) NodeOption {
	return func(c *nodeConfig) { c.memory = &q }
}

// WithNodeTaints puts taints on the node's spec.
func WithNodeTaints(taints ...corev1.Taint) NodeOption {
	return func(c *nodeConfig) { c.taints = append(c.taints, taints...) }
}

// WithNodeNotReady reports the node's Ready condition as False.
func WithNodeNotReady() NodeOption {
	return func(c *nodeConfig) { c.notReady = true }
}

// RegisterGPUNode creates a Node through the API server as a kubelet with
// NVIDIA's device plugin would: capacity and allocatable of gpus
// nvidia.com/gpu, CPU, memory and pods, and a Ready condition. Status is a
// subresource for nodes, so it is written with UpdateStatus after Create.
// The label kubernetes.io/hostname is set to name unless labels set it.
// On a status error the half-made Node is deleted.
func RegisterGPUNode(ctx context.Context, cs kubernetes.Interface, name string, gpus int, labels map[string]string, opts ...NodeOption) (*corev1.Node, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("testenv: node name is empty: it must be a DNS subdomain name")
	}
	if gpus < 0 {
		return nil, fmt.Errorf("testenv: node %s: gpus is %d: it must be >= 0", name, gpus)
	}
	if cs == nil {
		return nil, fmt.Errorf("testenv: node %s: clientset is nil", name)
	}
	c := nodeConfig{}
	for _, o := range opts {
		o(&c)
	}
	cpu := resource.MustParse(fmt.Sprint(max(minNodeCPU, cpuPerGPU*gpus)))
	if c.cpu != nil {
		cpu = *c.cpu
	}
	mem := resource.MustParse(fmt.Sprintf("%dGi", max(minNodeMemGiB, memoryPerGPUGiB*gpus)))
	if c.memory != nil {
		mem = *c.memory
	}

	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range labels {
		l[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       corev1.NodeSpec{Taints: c.taints},
	}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("testenv: create node %s: %w", name, err)
	}

	resources := corev1.ResourceList{
		GPUResource:           *resource.NewQuantity(int64(gpus), resource.DecimalSI),
		corev1.ResourceCPU:    cpu,
		corev1.ResourceMemory: mem,
		corev1.ResourcePods:   *resource.NewQuantity(podsPerNode, resource.DecimalSI),
	}
	ready := corev1.ConditionTrue
	reason, msg := "KubeletReady", "kubelet is posting ready status"
	if c.notReady {
		ready, reason, msg = corev1.ConditionFalse, "KubeletNotReady", "registered not ready by testenv"
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources.DeepCopy(),
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             ready,
			Reason:             reason,
			Message:            msg,
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name},
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		},
	}
	updated, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		delErr := cs.CoreV1().Nodes().Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{})
		return nil, errors.Join(fmt.Errorf("testenv: set status of node %s: %w", name, err), delErr)
	}
	return updated, nil
}

// tailWriter keeps the last max bytes written to it; etcd's and the
// apiserver's output goroutines write to it concurrently.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// testWriter sends slog lines to t.Log, so they show with the test that made
// them.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
