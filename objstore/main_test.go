package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"babelfish.dev/babelfish/internal/testenv"
)

// shared is the MinIO most tests use; TestMain starts it from the tools
// cache and fails the run (never skips) when it cannot.
var shared *testenv.MinIO

// Environment of the child process TestCrashBeforeManifest runs.
const (
	envCrashChild = "OBJSTORE_TEST_CRASH_CHILD"
	envCrashAddr  = "OBJSTORE_TEST_CRASH_ADDR"
)

func TestMain(m *testing.M) {
	if os.Getenv(envCrashChild) != "" {
		os.Exit(crashChild())
	}
	testenv.RunWithMinIO(m, "objstore", func(mi *testenv.MinIO) { shared = mi })
}

// logCounter is a slog handler that counts records by message, so tests
// can tell how many retries a call made.
type logCounter struct {
	t     testing.TB
	warns *atomic.Int64
}

func (h logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h logCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") || strings.Contains(r.Message, "resuming") {
		h.warns.Add(1)
	}
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.t.Logf("%s%s", r.Message, b.String())
	return nil
}
func (h logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logCounter) WithGroup(string) slog.Handler      { return h }

func randomName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// testConfig points at m with a fresh bucket, the smallest part size (so
// multipart paths run on small data) and quick retries.
func testConfig(m *testenv.MinIO) Config {
	cfg := DefaultConfig()
	cfg.Endpoint = m.Endpoint
	cfg.Bucket = randomName("t")
	cfg.AccessKey, cfg.SecretKey = m.AccessKey, m.SecretKey
	cfg.PartSize = MinPartSize
	cfg.RetryBaseDelay = 20 * time.Millisecond
	cfg.RetryMaxDelay = 200 * time.Millisecond
	return cfg
}

// newTestClient builds a client on m (the shared MinIO when nil) after
// mutate edits the config, creates its bucket, and returns it with a
// counter of retry log lines.
func newTestClient(t testing.TB, m *testenv.MinIO, mutate func(*Config)) (*Client, *atomic.Int64) {
	t.Helper()
	if m == nil {
		m = shared
	}
	cfg := testConfig(m)
	if mutate != nil {
		mutate(&cfg)
	}
	warns := new(atomic.Int64)
	ctx := context.Background()
	c, err := New(ctx, cfg, WithLogger(slog.New(logCounter{t: t, warns: warns})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.EnsureBucket(ctx); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	warns.Store(0)
	return c, warns
}

// rawClient is plain minio-go on the same server, for going behind the
// package's back.
func rawClient(t testing.TB, m *testenv.MinIO) *minio.Client {
	t.Helper()
	if m == nil {
		m = shared
	}
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testData(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}
