package cluster

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"babelfish.dev/babelfish/internal/kube"
	"babelfish.dev/babelfish/internal/kubetest"
)

// testStopLeavesNothingAndStartsAgain runs last: it stops the suite's
// cluster and checks that nothing of it is left on the machine (processes,
// mounts, network namespaces, bridge, iptables chains, cgroups). Then: a
// cluster whose kubelet cannot start fails naming the kubelet and its log,
// and leaves nothing; a state directory too long for the kubelet's sockets
// is refused up front; a SIGKILLed cluster's remains are cleared; and a
// second cluster starts on the same machine and stops clean.
func testStopLeavesNothingAndStartsAgain(t *testing.T) {
	ctx := t.Context()
	dir := env.cl.Dir()
	if err := env.cl.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := kube.Leftovers(dir); len(left) > 0 {
		t.Fatalf("the stopped cluster left: %v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its temporary directory %s is still there", dir)
	}

	t.Run("a part that does not start", func(t *testing.T) {
		_, err := kube.Start(ctx, kube.WithExtraArgs("kubelet", "--no-such-flag"), kube.WithStartTimeout(time.Minute), kube.WithLogger(env.log))
		var pe *kube.PartError
		if !errors.As(err, &pe) {
			t.Fatalf("start with a broken kubelet: %v; want a *kube.PartError", err)
		}
		if pe.Part != "kubelet" || pe.Log == "" {
			t.Errorf("the error names part %q with log %q; want the kubelet and its log", pe.Part, pe.Log)
		}
		t.Logf("the error: %v", err)
		if left := kube.Leftovers(""); len(left) > 0 {
			t.Errorf("the failed start left: %v", left)
		}
	})

	t.Run("a state directory too long for the kubelet's sockets", func(t *testing.T) {
		long := filepath.Join(t.TempDir(), strings.Repeat("d", 60))
		_, err := kube.Start(ctx, kube.WithDir(long), kube.WithLogger(env.log))
		if err == nil || !strings.Contains(err.Error(), "too long") {
			t.Fatalf("start in %s: %v; want an error saying the directory is too long", long, err)
		}
		if left := kube.Leftovers(long); len(left) > 0 {
			t.Errorf("the refused start left: %v", left)
		}
	})

	t.Run("a killed cluster is cleared", testKilledClusterIsCleared)

	t.Run("a second start", func(t *testing.T) {
		cl, err := kube.Start(ctx, kube.WithImages(env.images.Pause()), kube.WithLogger(env.log))
		if err != nil {
			t.Fatalf("second start on the same machine: %v", err)
		}
		t.Logf("second start took %v", cl.StartupDuration().Round(time.Millisecond))
		d := cl.Dir()
		if err := cl.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if left := kube.Leftovers(d); len(left) > 0 {
			t.Errorf("the second cluster left: %v", left)
		}
	})
}

// testKilledClusterIsCleared starts a cluster in another process (kubeup,
// as `make cluster` does), runs a pod on it, and SIGKILLs that process: its
// parts die with it, but containerd's shims, the pod's containers, mounts,
// the pod's network namespace, the bridge and the iptables chains are left.
// kube.Clean (what the next Start does first) removes all of it.
func testKilledClusterIsCleared(t *testing.T) {
	ctx := t.Context()
	// Not t.TempDir: its long name would not leave room for the kubelet's
	// socket paths (Start refuses such a directory).
	dir, err := os.MkdirTemp("", "bf-killed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "kubeup")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../internal/kube/kubeup").CombinedOutput(); err != nil {
		t.Fatalf("go build kubeup: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "cluster")
	cmd := exec.Command(bin, "--dir", state, "--images", filepath.Join(dir, "images"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "kubeup.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	stderr := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "cluster up") {
				up <- true
			}
		}
		close(up)
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("kubeup ended before the cluster was up:\n%s", stderr())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("kubeup: no cluster after 3 minutes:\n%s", stderr())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Spec: restrictedPod("docker.io/babelfish/babelfish:dev",
		"gpu-agent", "--fake-gpus=dgxa100", "--listen=:9400", "--publish=false", "--pod-resources-socket=")}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubetest.WaitPodsReady(ctx, cs, "default", "", 1, 2*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, kubetest.Describe(ctx, cs, "default"))
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()
	time.Sleep(2 * time.Second) // the parts die by their parent-death signal
	left := kube.Leftovers(state)
	if len(left) == 0 {
		t.Fatal("a SIGKILLed cluster left nothing: the test no longer exercises the cleanup")
	}
	t.Logf("the killed cluster left %d things, e.g. %q", len(left), left[:min(4, len(left))])
	if err := kube.Clean(ctx, env.log); err != nil {
		t.Fatalf("clean: %v", err)
	}
	if left := kube.Leftovers(state); len(left) > 0 {
		t.Errorf("after kube.Clean these are left: %v", left)
	}
}
