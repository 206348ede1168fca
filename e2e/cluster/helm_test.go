package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/internal/browser"
	"babelfish.dev/babelfish/internal/kubetest"
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

	t.Run("one scheduler leads, serving scales by its HPA", func(t *testing.T) {
		deadline := time.Now().Add(time.Minute)
		for {
			lease, err := env.cs.CoordinationV1().Leases(releaseNS).Get(ctx, "babelfish-scheduler", metav1.GetOptions{})
			if err == nil && lease.Spec.HolderIdentity != nil && strings.HasPrefix(*lease.Spec.HolderIdentity, component("scheduler")) {
				t.Logf("leader: %s", *lease.Spec.HolderIdentity)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no scheduler holds Lease %s/babelfish-scheduler: %v %+v", releaseNS, err, lease)
			}
			time.Sleep(time.Second)
		}
		hpa, err := env.cs.AutoscalingV2().HorizontalPodAutoscalers(releaseNS).Get(ctx, component("serving"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if hpa.Spec.ScaleTargetRef.Name != component("serving") || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 {
			t.Errorf("serving's HPA targets %s with min %v; want %s, 2", hpa.Spec.ScaleTargetRef.Name, hpa.Spec.MinReplicas, component("serving"))
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

// minioStore is an object-store client on the in-cluster MinIO.
func minioStore(t *testing.T) *objstore.Client {
	t.Helper()
	st, err := kubetest.MinIOStore(t.Context(), env.cs, releaseNS, component("minio"), "babelfish")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// promoteTinyModel promotes a random-weight model: serving follows
// `current`.
func promoteTinyModel(t *testing.T, st *objstore.Client, seed uint64) registry.Release {
	t.Helper()
	rel, err := kubetest.PromoteRandomModel(t.Context(), st, modelName, fmt.Sprintf("cluster-e2e-%d", seed), []string{"de", "fr"}, seed)
	if err != nil {
		t.Fatalf("promote: %v", err)
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

func testWAV(t testing.TB) []byte {
	t.Helper()
	b, err := kubetest.ToneWAV()
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
