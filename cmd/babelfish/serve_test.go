package main

import (
	"bytes"
	"context"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"babelfish.dev/babelfish/audio"
	"babelfish.dev/babelfish/internal/fixture"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
)

// TestPromoteServeTranslate runs the serving path through the CLI on a real
// MinIO: promote a job's checkpoint, serve it, translate a file unary and
// streaming, promote again, list, roll back.
func TestPromoteServeTranslate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"promote"}, "--model is required"},
		{[]string{"promote", "--model", "m"}, "exactly one of"},
		{[]string{"promote", "--model", "m", "--list", "--rollback"}, "exactly one of"},
		{[]string{"promote", "--model", "m", "--to", "2", "--job", "j"}, "--to goes with --rollback"},
		{[]string{"serve"}, "--model is required"},
		{[]string{"translate", "--to", "fr", "in.wav"}, "-o/--output is required"},
		{[]string{"translate", "-o", "x.wav", "in.wav"}, "--to is required"},
	} {
		if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one with %q", tc.args, err, tc.want)
		}
	}

	mi := testenv.MinIOForTest(t)
	t.Setenv("BABELFISH_S3_ENDPOINT", mi.Endpoint)
	t.Setenv("BABELFISH_S3_ACCESS_KEY", mi.AccessKey)
	t.Setenv("BABELFISH_S3_SECRET_KEY", mi.SecretKey)
	ctx := context.Background()
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = mi.Endpoint, mi.AccessKey, mi.SecretKey, "babelfish"
	st, err := objstore.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	writeCheckpoint(t, st, "job1", 10, 3, 0.4)
	writeCheckpoint(t, st, "job1", 20, 4, 0.6)

	out, err := run(t, "promote", "--model", "m", "--job", "job1", "--step", "10")
	if err != nil || !strings.Contains(out, "m/releases/1 from checkpoints/job1/000000000010/") || !strings.Contains(out, "concept_accuracy=0.4") {
		t.Fatalf("promote: %v\n%s", err, out)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		root := newRootCmd()
		var log bytes.Buffer
		root.SetOut(&log)
		root.SetErr(&log)
		root.SetArgs([]string{"serve", "--model", "m", "--listen", addr, "--metrics-listen", "", "--poll", "50ms", "--max-output-seconds", "0.3"})
		served <- root.ExecuteContext(sctx)
	}()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	waitServing(t, addr)

	dir := t.TempDir()
	in := filepath.Join(dir, "in.wav")
	var x []float32
	for _, loud := range []bool{false, true, false, true, false} {
		for i := range 8000 {
			v := 0.0
			if loud {
				v = 0.3 * math.Sin(2*math.Pi*200*float64(i)/16000)
			}
			x = append(x, float32(v))
		}
	}
	wav, _ := audio.EncodeWAV(audio.Clip{Rate: 16000, Samples: x}, audio.PCM16)
	if err := os.WriteFile(in, wav, 0o644); err != nil {
		t.Fatal(err)
	}
	outWav := filepath.Join(dir, "out.wav")
	out, err = run(t, "translate", "--server", addr, "--to", "fr", in, "-o", outWav)
	if err != nil || !strings.Contains(out, "by m/releases/1") {
		t.Fatalf("translate: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(outWav); err != nil {
		t.Fatal(err)
	} else if _, err := audio.DecodeWAV(b, audio.Limits{}); err != nil {
		t.Fatalf("out.wav: %v", err)
	}
	out, err = run(t, "translate", "--server", addr, "--to", "de", "--stream", in, "-o", outWav)
	if err != nil || !strings.Contains(out, "segment 1:") || !strings.Contains(out, "2 segments") {
		t.Fatalf("translate --stream: %v\n%s", err, out)
	}
	if _, err = run(t, "translate", "--server", addr, "--to", "xx", in, "-o", outWav); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("translate --to xx: %v", err)
	}

	if out, err = run(t, "promote", "--model", "m", "--job", "job1"); err != nil || !strings.Contains(out, "m/releases/2 from checkpoints/job1/000000000020/") {
		t.Fatalf("promote latest: %v\n%s", err, out)
	}
	waitRelease(t, addr, in, outWav, "m/releases/2")
	out, err = run(t, "promote", "--model", "m", "--list")
	if err != nil || !strings.Contains(out, "RELEASE") || !strings.Contains(out, "2        *") {
		t.Fatalf("promote --list: %v\n%s", err, out)
	}
	if out, err = run(t, "promote", "--model", "m", "--rollback"); err != nil || !strings.Contains(out, "current is m/releases/1") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	waitRelease(t, addr, in, outWav, "m/releases/1")
}

func waitServing(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		h, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && h.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not SERVING after a minute: %v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitRelease(t *testing.T, addr, in, outWav, release string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := run(t, "translate", "--server", addr, "--to", "fr", in, "-o", outWav)
		if err == nil && strings.Contains(out, "by "+release) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v\n%s", release, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeCheckpoint commits a randomly initialised tiny model as the
// trainer lays a checkpoint out.
func writeCheckpoint(t *testing.T, st *objstore.Client, job string, step int64, seed uint64, acc float64) {
	t.Helper()
	fixture.WriteCheckpoint(t, st, job, step, fixture.TinyModel(t, []string{"de", "en", "fr"}, seed, 2),
		map[string]any{"eval": map[string]float64{"concept_accuracy": acc}})
}
