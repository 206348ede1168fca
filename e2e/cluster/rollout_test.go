package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
)

// load is clients calling Translate through serving's ClusterIP Service,
// each on its own connection, until stopped.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       map[string]int // distinct failures and how often
	versions   map[string]int // model versions that answered
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, clients int) *load {
	t.Helper()
	addr := serviceAddr(t, releaseNS, component("serving"), "")
	wav := testWAV(t)
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{errs: map[string]int{}, versions: map[string]int{}, stop: cancel}
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c := babelfishv1.NewTranslatorClient(conn)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer conn.Close()
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				resp, err := c.Translate(rctx, &babelfishv1.TranslateRequest{
					Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "fr", SourceLanguage: "de",
				})
				rcancel()
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					l.errs[fmt.Sprintf("client %d: %v", i%4, err)]++
				} else {
					l.ok.Add(1)
					l.versions[resp.GetModelVersion()]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// finish stops the clients and fails t on any failed request.
func (l *load) finish(t *testing.T, what string) {
	t.Helper()
	l.stop()
	l.wg.Wait()
	t.Logf("%s: %d requests answered, %d failed, versions %v", what, l.ok.Load(), l.failed.Load(), l.versions)
	if l.failed.Load() > 0 {
		t.Errorf("%s: %d of %d requests failed: %v", what, l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
	if l.ok.Load() == 0 {
		t.Errorf("%s: no request was answered", what)
	}
}

func requireInstalled(t *testing.T) {
	t.Helper()
	if !installed {
		t.Fatal("the release is not installed: the install failed first")
	}
}

// testHelmUpgradeUnderLoad rolls every Deployment and the DaemonSet to a
// new image tag with `helm upgrade --wait` while 16 clients call
// Translate through the Service: not one request may fail.
func testHelmUpgradeUnderLoad(t *testing.T) {
	requireInstalled(t)
	ctx := t.Context()
	l := startLoad(t, 16)
	time.Sleep(2 * time.Second) // the clients are connected and busy first
	began := time.Now()
	out, err := helm(ctx, "upgrade", releaseName, chartDir(t), "--namespace", releaseNS,
		"--reuse-values", "--set", "image.tag="+tagB, "--wait", "--timeout", "6m")
	if err != nil {
		l.finish(t, "upgrade")
		t.Fatalf("helm upgrade: %v\n%s\n%s", err, out, describePods(releaseNS))
	}
	t.Logf("helm upgrade --wait took %v", time.Since(began).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // the new pods answer too
	l.finish(t, "helm upgrade under load")

	pods, err := env.cs.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{LabelSelector: selector("serving")})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+tagB) {
			t.Errorf("serving pod %s runs %s after the upgrade, want tag %s", p.Name, img, tagB)
		}
	}
}

// testRuntimeRestartKeepsServing restarts containerd, then the kubelet,
// while 16 clients call Translate: the running pods keep answering, none
// restarts, and the release stays current.
func testRuntimeRestartKeepsServing(t *testing.T) {
	requireInstalled(t)
	ctx := t.Context()
	before := podRestarts(t)
	l := startLoad(t, 16)
	time.Sleep(2 * time.Second)
	if err := env.cl.RestartContainerd(ctx); err != nil {
		l.finish(t, "containerd restart")
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := env.cl.RestartKubelet(ctx); err != nil {
		l.finish(t, "kubelet restart")
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // the kubelet resyncs its pods and probes
	l.finish(t, "containerd and kubelet restarts")
	after := podRestarts(t)
	for name, n := range before {
		m, ok := after[name]
		switch {
		case !ok:
			t.Errorf("pod %s is gone after the restarts", name)
		case m != n:
			t.Errorf("pod %s restarted its containers (%d -> %d) across the runtime restarts", name, n, m)
		}
	}
	waitPodsReady(t, releaseNS, selector("serving"), 2, 2*time.Minute)
	conn := dialServing(t)
	if v := translateOnce(t, conn).GetModelVersion(); !strings.HasPrefix(v, modelName+"/releases/") {
		t.Errorf("after the restarts the model version is %q", v)
	}
}

// podRestarts maps each running pod of the release (by UID and name) to
// its containers' restart count.
func podRestarts(t *testing.T) map[string]int32 {
	t.Helper()
	pods, err := env.cs.CoreV1().Pods(releaseNS).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int32{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != "Running" {
			continue
		}
		var n int32
		for _, c := range p.Status.ContainerStatuses {
			n += c.RestartCount
		}
		m[p.Name+"/"+string(p.UID)] = n
	}
	return m
}
