// Command cluster measures Babelfish on the real single-node Kubernetes
// cluster (internal/kube): how long the cluster takes to start cold (a new
// state directory, images imported) and warm (the same directory again),
// how long `helm install` takes until every pod is Ready (the release
// promoted into the in-cluster MinIO on the way), and the median Translate
// latency through serving's ClusterIP Service beside the same binary and
// model served on loopback, in paired rounds.
//
//	go run ./bench/cluster [-requests 400] [-rounds 5]
//
// It needs root and the tools cache (`make tools`), and prints one line:
//
//	bench cluster cold_start_s=… warm_start_s=… install_to_ready_s=… translate_p50_ms=… loopback_p50_ms=… service_overhead_ratio=…
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/internal/kube"
	"babelfish.dev/babelfish/internal/kubetest"
	"babelfish.dev/babelfish/internal/tools"
	"babelfish.dev/babelfish/objstore"
)

const (
	ns        = "babelfish"
	release   = "babelfish"
	modelName = "s2st"
)

func main() {
	requests := flag.Int("requests", 400, "Translate requests per path (Service, loopback), split over the rounds")
	rounds := flag.Int("rounds", 5, "paired rounds: each sends requests/rounds through the Service, then as many on loopback")
	flag.Parse()
	if err := run(*requests, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench cluster:", err)
		os.Exit(1)
	}
}

func run(requests, rounds int) error {
	if requests < rounds || rounds < 1 {
		return fmt.Errorf("-requests %d must be at least -rounds %d, which must be >= 1", requests, rounds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	toolsDir, err := tools.Dir()
	if err != nil {
		return err
	}
	helmBin, err := tools.Tool("helm")
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "babelfish-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	images, err := kube.BuildImages(ctx, filepath.Join(filepath.Dir(toolsDir), "images", "bench"), "bench")
	if err != nil {
		return err
	}
	labels := kube.WithNodeLabels(map[string]string{"nvidia.com/gpu.present": "true"})
	dir := filepath.Join(scratch, "cluster")

	// Cold: a new directory, so etcd, certificates and containerd's images
	// are made from nothing. Warm: the same directory started again.
	cl, err := kube.Start(ctx, kube.WithDir(dir), kube.WithImages(images.Archives()...), labels, kube.WithLogger(log))
	if err != nil {
		return err
	}
	cold := cl.StartupDuration()
	if err := cl.Stop(ctx); err != nil {
		return err
	}
	cl, err = kube.Start(ctx, kube.WithDir(dir), labels, kube.WithLogger(log))
	if err != nil {
		return err
	}
	defer cl.Stop(context.Background())
	warm := cl.StartupDuration()
	cs := cl.Clientset()

	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	chart := filepath.Join(root, "charts", "babelfish")
	helm := kubetest.Helm{Bin: helmBin, Kubeconfig: cl.Kubeconfig(), Home: filepath.Join(scratch, "helm")}
	began := time.Now()
	if out, err := helm.Run(ctx, "install", release, chart, "--namespace", ns, "-f", filepath.Join(chart, "ci", "local-cluster-values.yaml"),
		"--set", "image.tag="+images.Tag, "--set", "minio.image.tag="+images.Tag); err != nil {
		return fmt.Errorf("helm install (run from the repository root): %v\n%s", err, out)
	}
	sel := func(c string) string {
		return "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=" + c
	}
	if _, err := kubetest.WaitPodsReady(ctx, cs, ns, sel("minio"), 1, 3*time.Minute); err != nil {
		return fmt.Errorf("%w\n%s", err, kubetest.Describe(ctx, cs, ns))
	}
	st, err := kubetest.MinIOStore(ctx, cs, ns, release+"-minio", "babelfish")
	if err != nil {
		return err
	}
	if _, err := kubetest.PromoteRandomModel(ctx, st, modelName, "bench", []string{"de", "fr"}, 1); err != nil {
		return err
	}
	if _, err := kubetest.WaitPodsReady(ctx, cs, ns, "app.kubernetes.io/instance="+release, 6, 5*time.Minute); err != nil {
		return fmt.Errorf("%w\n%s", err, kubetest.Describe(ctx, cs, ns))
	}
	installToReady := time.Since(began)

	// The same binary and model on loopback: the image's babelfish is this
	// checkout's, built the same way.
	svcAddr, err := kubetest.ServiceAddr(ctx, cs, ns, release+"-serving", "")
	if err != nil {
		return err
	}
	s3, err := kubetest.MinIOConfig(ctx, cs, ns, release+"-minio", "babelfish")
	if err != nil {
		return err
	}
	loop, stopLoop, err := serveOnLoopback(ctx, scratch, s3)
	if err != nil {
		return err
	}
	defer stopLoop()

	wav, err := kubetest.ToneWAV()
	if err != nil {
		return err
	}
	svcClient, err := newClient(svcAddr)
	if err != nil {
		return err
	}
	loopClient, err := newClient(loop)
	if err != nil {
		return err
	}
	req := &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "fr", SourceLanguage: "de"}
	for _, c := range []babelfishv1.TranslatorClient{svcClient, loopClient} { // warm both paths
		if _, err := timeRequests(ctx, c, req, 20); err != nil {
			return err
		}
	}
	var viaSvc, viaLoop []time.Duration
	per := requests / rounds
	for range rounds {
		d, err := timeRequests(ctx, svcClient, req, per)
		if err != nil {
			return fmt.Errorf("through the Service: %w", err)
		}
		viaSvc = append(viaSvc, d...)
		if d, err = timeRequests(ctx, loopClient, req, per); err != nil {
			return fmt.Errorf("on loopback: %w", err)
		}
		viaLoop = append(viaLoop, d...)
	}
	p50s, p50l := median(viaSvc), median(viaLoop)
	fmt.Printf("bench cluster cold_start_s=%.1f warm_start_s=%.1f install_to_ready_s=%.1f translate_p50_ms=%.2f loopback_p50_ms=%.2f service_overhead_ratio=%.2f requests=%d rounds=%d cores=%d\n",
		cold.Seconds(), warm.Seconds(), installToReady.Seconds(), ms(p50s), ms(p50l), float64(p50s)/float64(p50l), len(viaSvc), rounds, runtime.NumCPU())
	return nil
}

// serveOnLoopback builds this checkout's babelfish and runs `serve` as the
// chart does, on a loopback port, reading the same MinIO.
func serveOnLoopback(ctx context.Context, dir string, s3 objstore.Config) (string, func(), error) {
	bin := filepath.Join(dir, "babelfish")
	if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/babelfish").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--log-level=warn", "--listen="+addr, "--model="+modelName)
	cmd.Env = append(os.Environ(), objstore.EnvEndpoint+"="+s3.Endpoint, objstore.EnvTLS+"=false",
		objstore.EnvAccessKey+"="+s3.AccessKey, objstore.EnvSecretKey+"="+s3.SecretKey, objstore.EnvBucket+"="+s3.Bucket)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	c, err := newClient(addr)
	if err != nil {
		stop()
		return "", nil, err
	}
	wav, _ := kubetest.ToneWAV()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Translate(rctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "fr"})
		cancel()
		if err == nil {
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("loopback serve at %s not answering after 2 minutes: %w", addr, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func newClient(addr string) (babelfishv1.TranslatorClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return babelfishv1.NewTranslatorClient(conn), nil
}

// timeRequests sends n requests one after another and returns each one's
// latency.
func timeRequests(ctx context.Context, c babelfishv1.TranslatorClient, req *babelfishv1.TranslateRequest, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := c.Translate(rctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(resp.GetAudio().GetWav()) == 0 {
			return nil, errors.New("empty audio")
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
