package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"babelfish.dev/babelfish/internal/minio"
)

// MinIO is a running (or stopped, restartable) `minio server` process on
// loopback; see internal/minio, which `babelfish up` uses too.
type MinIO = minio.Server

// MinIOOption changes how StartMinIO runs the server.
type MinIOOption = minio.Option

// WithMinIODataDir keeps the objects in dir (created if missing) instead of
// a temporary directory; Stop leaves a given directory in place.
func WithMinIODataDir(dir string) MinIOOption { return minio.WithDataDir(dir) }

// WithMinIOCredentials sets the root credentials instead of random ones.
func WithMinIOCredentials(accessKey, secretKey string) MinIOOption {
	return minio.WithCredentials(accessKey, secretKey)
}

// WithMinIOAddress serves the S3 API on addr (host:port) instead of a free
// loopback port.
func WithMinIOAddress(addr string) MinIOOption { return minio.WithAddress(addr) }

// WithMinIOStartTimeout bounds how long Start waits for /minio/health/live.
func WithMinIOStartTimeout(d time.Duration) MinIOOption { return minio.WithStartTimeout(d) }

// WithMinIOLogger sets the logger for lifecycle events (start, stop).
func WithMinIOLogger(l *slog.Logger) MinIOOption { return minio.WithLogger(l) }

// WithMinIOOutput copies minio's stdout and stderr to w as well as to the
// in-memory tail used in errors.
func WithMinIOOutput(w io.Writer) MinIOOption { return minio.WithOutput(w) }

// StartMinIO starts `minio server` from the tools cache on free loopback
// ports with random root credentials, and waits until it serves them. ctx
// bounds only the start; the server runs until Stop.
func StartMinIO(ctx context.Context, opts ...MinIOOption) (*MinIO, error) {
	return minio.Start(ctx, opts...)
}

// MinIOForTest starts a MinIO for one test and stops it when the test ends.
// A missing binary fails the test with the "run `make tools`" message; it
// never skips.
func MinIOForTest(t testing.TB, opts ...MinIOOption) *MinIO {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*minio.DefaultStartTimeout)
	defer cancel()
	m, err := StartMinIO(ctx, opts...)
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("minio output (tail):\n%s", m.Output())
		}
		if err := m.Stop(); err != nil {
			t.Errorf("stop minio: %v", err)
		}
	})
	return m
}

// RunWithMinIO is a package's TestMain for tests that share one MinIO: it
// starts the server, hands it to use (which keeps it for the tests), runs
// the tests, stops the server and exits with the tests' code. A MinIO that
// cannot start fails the run, naming pkg; it never skips.
func RunWithMinIO(m *testing.M, pkg string, use func(*MinIO)) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*minio.DefaultStartTimeout)
	mi, err := StartMinIO(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests need a real MinIO: %v\n", pkg, err)
		os.Exit(1)
	}
	use(mi)
	code := m.Run()
	if err := mi.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop minio:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}
