package testenv

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func minioTestClient(t *testing.T, m *MinIO) *minio.Client {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func healthStatus(endpoint string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + endpoint + "/minio/health/live")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMinIOLifecycle starts a server, writes through the S3 API, kills and
// restarts it on the same port and directory, and checks the object
// survived; then Stop removes the temporary directory.
func TestMinIOLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := MinIOForTest(t)
	if !strings.HasPrefix(m.Endpoint, "127.0.0.1:") || m.AccessKey == "" || len(m.SecretKey) < 8 {
		t.Fatalf("endpoint %q, access key %q, secret length %d", m.Endpoint, m.AccessKey, len(m.SecretKey))
	}
	if got := healthStatus(m.Endpoint); got != http.StatusOK {
		t.Fatalf("health after start: status %d", got)
	}
	c := minioTestClient(t, m)
	if err := c.MakeBucket(ctx, "life", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	want := []byte("survives a crash")
	if _, err := c.PutObject(ctx, "life", "obj", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}

	for _, step := range []struct {
		name string
		halt func() error
	}{
		{"kill", m.Kill},
		{"shutdown", m.Shutdown},
	} {
		if err := step.halt(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if m.Running() || healthStatus(m.Endpoint) != 0 {
			t.Fatalf("%s: server still answers", step.name)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatalf("start after %s: %v", step.name, err)
		}
		obj, err := c.GetObject(ctx, "life", "obj", minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get after %s: %v", step.name, err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("after %s: got %q, %v; want %q", step.name, got, err, want)
		}
	}
	if err := m.Start(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start: got %v, want an already-running error", err)
	}

	dir := m.DataDir
	if err := m.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp data dir %s still there after Stop (stat err %v)", dir, err)
	}
	if err := m.Start(ctx); err == nil {
		t.Fatal("Start after Stop succeeded; want an error")
	}
	if err := m.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestMinIOGivenDirKept checks a caller's data directory and credentials are
// used and the directory is left in place, with its objects, by Stop.
func TestMinIOGivenDirKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "state")
	m, err := StartMinIO(ctx, WithMinIODataDir(dir), WithMinIOCredentials("keeper", "keeper-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if m.AccessKey != "keeper" || m.SecretKey != "keeper-secret" || m.DataDir != dir {
		t.Fatalf("got %q/%q in %q", m.AccessKey, m.SecretKey, m.DataDir)
	}
	if err := minioTestClient(t, m).MakeBucket(ctx, "kept", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kept")); err != nil {
		t.Fatalf("bucket directory gone after Stop: %v", err)
	}
}

// TestMinIOMissingBinary points the tools cache at an empty directory: the
// error must say how to get the binary.
func TestMinIOMissingBinary(t *testing.T) {
	t.Setenv(ToolsEnv, t.TempDir())
	_, err := StartMinIO(context.Background())
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("got %v, want an error that says to run make tools", err)
	}
}

// TestMinIOStartFailures checks the errors of a start that cannot work: a
// taken address is refused up front (minio itself would share the port),
// and a server that exits leaves its own output in the error.
func TestMinIOStartFailures(t *testing.T) {
	taken := MinIOForTest(t)
	tests := []struct {
		name string
		opts []MinIOOption
		want []string
	}{
		{"address taken", []MinIOOption{WithMinIOAddress(taken.Endpoint)}, []string{taken.Endpoint, "address already in use"}},
		// minio refuses a secret key under 8 characters and says so.
		{"server exits", []MinIOOption{WithMinIOCredentials("bad", "short")}, []string{"exited", "minio output", "MINIO_ROOT_PASSWORD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m, err := StartMinIO(ctx, append(tt.opts, WithMinIOStartTimeout(30*time.Second))...)
			if err == nil {
				m.Stop()
				t.Fatal("start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
	if got := healthStatus(taken.Endpoint); got != http.StatusOK {
		t.Fatalf("first server disturbed: health status %d", got)
	}
}
