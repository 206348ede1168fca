package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/internal/kube"
	"babelfish.dev/babelfish/internal/kubetest"
	"babelfish.dev/babelfish/internal/tools"
)

// The images every test runs: built once by TestMain from this checkout,
// with a second tag of the same content for the upgrade test.
const (
	tagA = "e2e-a"
	tagB = "e2e-b"
)

// env is the one cluster TestCluster's steps share; the last step stops it
// and checks what is left.
var env struct {
	cl     *kube.Cluster
	cs     kubernetes.Interface
	images kube.ImageSet
	helm   string
	dir    string // scratch space for the suite
	log    *slog.Logger
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/cluster setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	if env.dir, err = os.MkdirTemp("", "babelfish-e2e-cluster-"); err != nil {
		return 0, err
	}
	defer os.RemoveAll(env.dir)
	if env.helm, err = tools.Tool("helm"); err != nil {
		return 0, err
	}
	toolsDir, err := tools.Dir()
	if err != nil {
		return 0, err
	}
	began := time.Now()
	// Built where `make cluster` builds them, so a warm run reuses the layers.
	if env.images, err = kube.BuildImages(ctx, filepath.Join(filepath.Dir(toolsDir), "images", "e2e"), tagA); err != nil {
		return 0, err
	}
	env.log.Info("images built", "took", time.Since(began).Round(time.Millisecond))
	env.cl, err = kube.Start(ctx,
		kube.WithImages(env.images.Archives()...),
		kube.WithNodeLabels(map[string]string{"nvidia.com/gpu.present": "true"}),
		kube.WithLogger(env.log))
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := env.cl.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "e2e/cluster: stop:", err)
		}
	}()
	env.cs = env.cl.Clientset()
	if err := env.cl.TagImage(ctx, env.images.BabelfishRef(), "docker.io/babelfish/babelfish:"+tagB); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// helm runs helm against the cluster and returns its combined output.
func helm(ctx context.Context, args ...string) (string, error) {
	return kubetest.Helm{Bin: env.helm, Kubeconfig: env.cl.Kubeconfig(), Home: filepath.Join(env.dir, "helm")}.Run(ctx, args...)
}

// chartDir is the chart in this checkout.
func chartDir(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "charts", "babelfish"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// restrictedNamespace makes a namespace that enforces Pod Security
// "restricted" (latest), and deletes it when t ends.
func restrictedNamespace(t *testing.T, name string) {
	t.Helper()
	createRestrictedNamespace(t, name)
	t.Cleanup(func() { deleteNamespace(t, name) })
}

func createRestrictedNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if _, err := env.cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func deleteNamespace(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", name, err)
		return
	}
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("namespace %s still terminating after 2 minutes", name)
	}
}

// waitPodsReady waits until every pod matching selector in ns is Ready
// (and at least want exist), failing with each pod's state.
func waitPodsReady(t *testing.T, ns, selector string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	pods, err := kubetest.WaitPodsReady(t.Context(), env.cs, ns, selector, want, timeout)
	if err != nil {
		t.Fatalf("%v:\n%s", err, describePods(ns))
	}
	return pods
}

func describePods(ns string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return kubetest.Describe(ctx, env.cs, ns)
}

// podLogs returns the logs of every container of the pods matching
// selector, for failure messages.
func podLogs(ns, selector string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := env.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range list.Items {
		for _, c := range p.Spec.Containers {
			raw, err := env.cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: ptr(int64(30))}).DoRaw(ctx)
			fmt.Fprintf(&b, "--- %s/%s (err %v)\n%s\n", p.Name, c.Name, err, raw)
		}
	}
	return b.String()
}

// serviceAddr is host:port of a Service's ClusterIP and named port.
func serviceAddr(t *testing.T, ns, name, port string) string {
	t.Helper()
	addr, err := kubetest.ServiceAddr(t.Context(), env.cs, ns, name, port)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func ptr[T any](v T) *T { return &v }

// TestCluster runs the suite's steps in order on the one cluster: each
// later step builds on the earlier ones (the release the install made),
// and the last one stops the cluster.
func TestCluster(t *testing.T) {
	// Inside a test, so go test's file log sees it (TestMain runs before
	// the log is set up).
	if err := readInputs(filepath.Join("..", "..")); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"pods, services and DNS", testPodsServicesAndDNS},
		{"helm install", testHelmInstall},
		{"helm upgrade under load", testHelmUpgradeUnderLoad},
		{"runtime restarts under load", testRuntimeRestartKeepsServing},
		{"bad input leaves nothing", testBadInputLeavesNothing},
		{"stop leaves nothing and starts again", testStopLeavesNothingAndStartsAgain},
	}
	for _, s := range steps {
		t.Run(s.name, s.fn)
	}
}

// readInputs reads every file of the repository. The suite's real inputs
// reach it through subprocesses (the image is built from the whole tree,
// helm reads the chart), which go test's result cache cannot see; a file
// the test process itself opened is part of the cache key, so a change
// anywhere runs the suite again instead of reporting a stale pass.
func readInputs(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		_, err = os.ReadFile(p)
		return err
	})
}
