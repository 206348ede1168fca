package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/internal/browser"
	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/model/registry"
	"babelfish.dev/babelfish/nvml/inventory"
	"babelfish.dev/babelfish/objstore"
)

// The release every test after TestHelmInstall runs against.
const (
	releaseNS   = "babelfish"
	releaseName = "babelfish"
	modelName   = "s2st"
)

// installed is set once TestHelmInstall has the release Ready and serving.
var installed bool

func localValues(t testing.TB) string {
	return filepath.Join(chartDir(t), "ci", "local-cluster-values.yaml")
}

func component(c string) string { return releaseName + "-" + c }

func selector(c string) string {
	return "app.kubernetes.io/instance=" + releaseName + ",app.kubernetes.io/component=" + c
}

// testHelmInstall installs the chart as a user would, into a namespace
// that enforces Pod Security "restricted", with the in-cluster MinIO;
// promotes a release into that MinIO; and checks every part: all pods
// Ready, `helm test`, the GPU agent's 8 fake GPUs on the Node, the
// scheduler's view of them, the dashboard in Chromium through its Service,
// and Translate and reflection through serving's ClusterIP Service.
func testHelmInstall(t *testing.T) {
	ctx := t.Context()
	// The release's namespace outlives this test: the later ones use it.
	createRestrictedNamespace(t, releaseNS)
	began := time.Now()
	out, err := helm(ctx, "install", releaseName, chartDir(t), "--namespace", releaseNS,
		"-f", localValues(t), "--set", "image.tag="+tagA, "--set", "minio.image.tag="+tagA)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install returned in %v", time.Since(began).Round(time.Millisecond))

	waitPodsReady(t, releaseNS, selector("minio"), 1, 3*time.Minute)
	st := minioStore(t)
	promoteTinyModel(t, st, 1)
	for _, c := range []struct {
		name string
		n    int
	}{{"scheduler", 2}, {"gpu-agent", 1}, {"serving", 2}} {
		waitPodsReady(t, releaseNS, selector(c.name), c.n, 5*time.Minute)
	}
	t.Logf("helm install to every pod Ready (release promoted on the way): %v", time.Since(began).Round(time.Millisecond))
	installed = true

	t.Run("helm test", func(t *testing.T) {
		out, err := helm(ctx, "test", releaseName, "--namespace", releaseNS, "--timeout", "4m", "--logs")
		if err != nil {
			t.Fatalf("helm test: %v\n%s\n%s", err, out, describePods(releaseNS))
		}
		for _, want := range []string{"Phase:          Succeeded"} {
			if !strings.Contains(out, want) {
				t.Errorf("helm test output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("gpu agent publishes 8 GPUs", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute)
		for {
			node, err := env.cs.CoreV1().Nodes().Get(ctx, env.cl.NodeName(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			inv, err := inventory.FromNode(node.Name, node.Annotations)
			if err == nil {
				if len(inv.GPUs) != 8 || inv.HealthyCount() != 8 {
					t.Fatalf("node inventory has %d GPUs, %d healthy; want the DGX A100's 8", len(inv.GPUs), inv.HealthyCount())
				}
				if node.Labels[inventory.LabelCount] != "8" {
					t.Errorf("node label %s=%q, want 8", inventory.LabelCount, node.Labels[inventory.LabelCount])
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no inventory on node %s: %v\n%s", node.Name, err, podLogs(releaseNS, selector("gpu-agent")))
			}
			time.Sleep(2 * time.Second)
		}
	})

	dash := "http://" + serviceAddr(t, releaseNS, component("scheduler-metrics"), "dashboard")
	t.Run("scheduler lists the GPUs", func(t *testing.T) {
		body := httpGetEventually(t, dash+"/api/state", time.Minute)
		var st struct {
			Nodes []struct {
				Name string            `json:"name"`
				GPUs []json.RawMessage `json:"gpus"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("dashboard state: %v: %.300s", err, body)
		}
		if len(st.Nodes) != 1 || st.Nodes[0].Name != env.cl.NodeName() || len(st.Nodes[0].GPUs) != 8 {
			t.Fatalf("the scheduler lists %+v; want node %s with 8 GPUs", st.Nodes, env.cl.NodeName())
		}
	})

	t.Run("dashboard in Chromium through the Service", func(t *testing.T) {
		page, err := browser.Open(ctx, dash+"/", browser.WithTimeout(time.Minute), browser.WithLogf(t.Logf))
		if err != nil {
			t.Fatal(err)
		}
		defer page.Close()
		if err := page.WaitVisible(`#gpus .gpu`); err != nil {
			t.Fatalf("dashboard at %s: %v", dash, err)
		}
		var n int
		if err := page.Eval(`document.querySelectorAll("#gpus .gpu").length`, &n); err != nil {
			t.Fatal(err)
		}
		if n != 8 {
			t.Errorf("the page shows %d GPU tiles, want 8", n)
		}
	})

	t.Run("translate and reflection through the ClusterIP Service", func(t *testing.T) {
		conn := dialServing(t)
		resp := translateOnce(t, conn)
		if !strings.HasPrefix(resp.GetModelVersion(), modelName+"/releases/") {
			t.Errorf("model version %q, want a release of %s", resp.GetModelVersion(), modelName)
		}
		services := listServices(t, conn)
		if !contains(services, "babelfish.v1.Translator") || !contains(services, "grpc.health.v1.Health") {
			t.Errorf("reflection lists %v; want babelfish.v1.Translator and grpc.health.v1.Health", services)
		}
	})
}

// minioStore is an object-store client on the in-cluster MinIO, through
// its ClusterIP Service, with the root credentials from the chart's Secret.
func minioStore(t *testing.T) *objstore.Client {
	t.Helper()
	secrets, err := env.cs.CoreV1().Secrets(releaseNS).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := objstore.DefaultConfig()
	for _, s := range secrets.Items {
		if u, p := s.Data["rootUser"], s.Data["rootPassword"]; len(u) > 0 && len(p) > 0 {
			cfg.AccessKey, cfg.SecretKey = string(u), string(p)
		}
	}
	if cfg.AccessKey == "" {
		t.Fatalf("no MinIO credentials Secret (rootUser, rootPassword) in %s", releaseNS)
	}
	cfg.Endpoint = serviceAddr(t, releaseNS, component("minio"), "")
	cfg.Bucket = "babelfish"
	st, err := objstore.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(t.Context()); err != nil {
		t.Fatalf("bucket on the in-cluster MinIO at %s: %v", cfg.Endpoint, err)
	}
	return st
}

// promoteTinyModel writes a small random-weight model as a checkpoint and
// promotes it: serving follows `current`.
func promoteTinyModel(t *testing.T, st *objstore.Client, seed uint64) registry.Release {
	t.Helper()
	m := fixture.TinyModel(t, []string{"de", "fr"}, seed, 8)
	job := fmt.Sprintf("cluster-e2e-%d", seed)
	prefix := fixture.WriteCheckpoint(t, st, job, 1, m, nil)
	reg, err := registry.New(st, modelName)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := reg.Promote(t.Context(), prefix)
	if err != nil {
		t.Fatalf("promote %s: %v", prefix, err)
	}
	return rel
}

func dialServing(t *testing.T) *grpc.ClientConn {
	t.Helper()
	addr := serviceAddr(t, releaseNS, component("serving"), "")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testWAV is a second of a 220 Hz tone at 16 kHz: the tiny model's
// mechanics need speech-shaped input, not speech.
func testWAV(t testing.TB) []byte {
	t.Helper()
	c := audio.Clip{Rate: 16000, Samples: make([]float32, 16000)}
	for i := range c.Samples {
		c.Samples[i] = float32(0.3 * math.Sin(2*math.Pi*220*float64(i)/16000))
	}
	b, err := audio.EncodeWAV(c, audio.PCM16)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func translateOnce(t *testing.T, conn *grpc.ClientConn) *babelfishv1.TranslateResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := babelfishv1.NewTranslatorClient(conn).Translate(ctx, &babelfishv1.TranslateRequest{
		Audio: &babelfishv1.Audio{Wav: testWAV(t)}, TargetLanguage: "fr", SourceLanguage: "de",
	})
	if err != nil {
		t.Fatalf("Translate through %s: %v", conn.Target(), err)
	}
	if len(resp.GetAudio().GetWav()) < 44 {
		t.Fatalf("Translate returned %d bytes of audio", len(resp.GetAudio().GetWav()))
	}
	return resp
}

func listServices(t *testing.T, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
