// Package kubetest installs and drives the Helm chart on internal/kube's
// real cluster, for the end-to-end tests (e2e/cluster) and the cluster
// bench (bench/cluster): helm with the cluster's kubeconfig, Services
// reached at their ClusterIP, pods waited for, and a model release promoted
// into the in-cluster MinIO.
package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/model"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/model/units"
	"babelfish.dev/babelfish/objstore"
)

// Helm runs helm against a cluster, with its own cache and config homes.
type Helm struct {
	Bin        string // the helm binary
	Kubeconfig string
	Home       string // holds helm's cache, config and data
}

// Run runs helm with args and returns its combined output.
func (h Helm) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+h.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(h.Home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.Home, "config"),
		"HELM_DATA_HOME="+filepath.Join(h.Home, "data"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ServiceAddr is host:port of a Service's ClusterIP and named port (the
// first port when port is empty).
func ServiceAddr(ctx context.Context, cs kubernetes.Interface, ns, name, port string) (string, error) {
	svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == port || port == "" {
			return fmt.Sprintf("%s:%d", svc.Spec.ClusterIP, p.Port), nil
		}
	}
	return "", fmt.Errorf("service %s/%s has no port %q", ns, name, port)
}

// PodReady reports a pod's Ready condition.
func PodReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodsReady waits until at least want pods match selector in ns and
// every one of them is Ready and not terminating.
func WaitPodsReady(ctx context.Context, cs kubernetes.Interface, ns, selector string, want int, timeout time.Duration) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var pods []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods = list.Items
		if len(pods) < want {
			return false, nil
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil || !PodReady(p) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return pods, fmt.Errorf("pods %q in %s not Ready after %v", selector, ns, timeout)
	}
	return pods, nil
}

// MinIOConfig is the object-store configuration of the chart's in-cluster
// MinIO: its ClusterIP Service, and the root credentials from the chart's
// Secret.
func MinIOConfig(ctx context.Context, cs kubernetes.Interface, ns, service, bucket string) (objstore.Config, error) {
	cfg := objstore.DefaultConfig()
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return cfg, err
	}
	for _, s := range secrets.Items {
		if u, p := s.Data["rootUser"], s.Data["rootPassword"]; len(u) > 0 && len(p) > 0 {
			cfg.AccessKey, cfg.SecretKey = string(u), string(p)
		}
	}
	if cfg.AccessKey == "" {
		return cfg, fmt.Errorf("no MinIO credentials Secret (rootUser, rootPassword) in %s", ns)
	}
	if cfg.Endpoint, err = ServiceAddr(ctx, cs, ns, service, ""); err != nil {
		return cfg, err
	}
	cfg.Bucket = bucket
	return cfg, nil
}

// MinIOStore is a client on the chart's in-cluster MinIO (MinIOConfig); it
// makes the bucket if need be.
func MinIOStore(ctx context.Context, cs kubernetes.Interface, ns, service, bucket string) (*objstore.Client, error) {
	cfg, err := MinIOConfig(ctx, cs, ns, service, bucket)
	if err != nil {
		return nil, err
	}
	st, err := objstore.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := st.EnsureBucket(ctx); err != nil {
		return nil, fmt.Errorf("bucket %s on the in-cluster MinIO at %s: %w", bucket, cfg.Endpoint, err)
	}
	return st, nil
}

// PromoteRandomModel commits a model of langs with random weights and the
// default shape as checkpoint job/1, and promotes it as the next release
// of modelName: serving follows `current`. Mechanics (storage, promotion,
// serving, the network path) need no trained model.
func PromoteRandomModel(ctx context.Context, st *objstore.Client, modelName, job string, langs []string, seed uint64) (registry.Release, error) {
	cfg := model.DefaultConfig(langs)
	cfg.Seed = seed
	rng := rand.New(rand.NewPCG(seed, 1))
	cb := &units.Codebook{K: cfg.Units, Dim: cfg.NMels(), Centroids: make([]float32, cfg.Units*cfg.NMels())}
	for i := range cb.Centroids {
		cb.Centroids[i] = -6 + 4*rng.Float32()
	}
	m, err := model.New(cfg, cb)
	if err != nil {
		return registry.Release{}, err
	}
	w, err := st.NewArtifact(fmt.Sprintf("checkpoints/%s/%012d/", job, 1))
	if err != nil {
		return registry.Release{}, err
	}
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		return registry.Release{}, err
	}
	if _, err := w.Put(ctx, registry.PartModel, b.Bytes(), nil); err != nil {
		return registry.Release{}, err
	}
	if _, err := w.Commit(ctx, map[string]any{"step": 1, "config": map[string]any{"job_id": job}}); err != nil {
		return registry.Release{}, err
	}
	reg, err := registry.New(st, modelName)
	if err != nil {
		return registry.Release{}, err
	}
	return reg.Promote(ctx, w.Prefix())
}

// ToneWAV is a second of a 220 Hz tone at 16 kHz as WAV PCM16: input of
// speech's shape for a model whose answers are not judged.
func ToneWAV() ([]byte, error) {
	c := audio.Clip{Rate: 16000, Samples: make([]float32, 16000)}
	for i := range c.Samples {
		c.Samples[i] = float32(0.3 * math.Sin(2*math.Pi*220*float64(i)/16000))
	}
	return audio.EncodeWAV(c, audio.PCM16)
}

// Describe says, for a failure message, each pod's phase, its containers'
// states and the namespace's warning events.
func Describe(ctx context.Context, cs kubernetes.Interface, ns string) string {
	var b strings.Builder
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range list.Items {
		fmt.Fprintf(&b, "  pod %s: %s ready=%v\n", p.Name, p.Status.Phase, PodReady(p))
		for _, c := range p.Status.ContainerStatuses {
			switch {
			case c.State.Waiting != nil:
				fmt.Fprintf(&b, "    %s waiting: %s %s\n", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
			case c.State.Terminated != nil:
				fmt.Fprintf(&b, "    %s terminated: %s %s (exit %d)\n", c.Name, c.State.Terminated.Reason, c.State.Terminated.Message, c.State.Terminated.ExitCode)
			default:
				fmt.Fprintf(&b, "    %s running, ready=%v, restarts=%d\n", c.Name, c.Ready, c.RestartCount)
			}
		}
	}
	if ev, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"}); err == nil {
		for _, e := range ev.Items {
			fmt.Fprintf(&b, "  event %s/%s: %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}
