package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"babelfish.dev/babelfish/internal/testenv"
)

func TestTransientClassification(t *testing.T) {
	s3err := func(status int, code string) error {
		return minio.ErrorResponse{StatusCode: status, Code: code}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), true},
		{"500", s3err(500, "InternalError"), true},
		{"503 SlowDown", s3err(503, "SlowDown"), true},
		{"503 not initialized", s3err(503, "XMinioServerNotInitialized"), true},
		{"429", s3err(429, "TooManyRequests"), true},
		{"timeout", &net.DNSError{IsTimeout: true}, true},
		{"NoSuchKey", s3err(404, "NoSuchKey"), false},
		{"AccessDenied", s3err(403, "AccessDenied"), false},
		{"SignatureDoesNotMatch", s3err(403, "SignatureDoesNotMatch"), false},
		{"PreconditionFailed", s3err(412, "PreconditionFailed"), false},
		{"cancelled", context.Canceled, false},
		{"checksum", &ChecksumError{Key: "k"}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("%s: transient = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c := &Client{cfg: Config{RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: time.Second}}
	for attempt, ceil := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		ceil *= time.Millisecond
		for range 50 {
			d := c.backoff(attempt)
			if d < ceil/2 || d > ceil {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, ceil/2, ceil)
			}
		}
	}
	if d := c.backoff(200); d > time.Second {
		t.Fatalf("huge attempt: backoff %v over the cap", d)
	}
}

// TestRetryAcrossOutage stops MinIO, starts writes and reads that hit
// connection refused, brings MinIO back within the retry budget, and
// checks they all succeed after retrying.
func TestRetryAcrossOutage(t *testing.T) {
	m := testenv.MinIOForTest(t)
	c, warns := newTestClient(t, m, func(cfg *Config) {
		cfg.MaxRetries = 12
		cfg.RetryBaseDelay = 100 * time.Millisecond
		cfg.RetryMaxDelay = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := testData(2*MinPartSize+5, 3)
	if _, err := c.Put(ctx, "before", big); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		restarted <- m.Start(ctx)
	}()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 3)
	go func() {
		_, err := c.Put(ctx, "small", []byte("written during an outage"))
		results <- result{"put small", err}
	}()
	go func() {
		_, err := c.PutReader(ctx, "large", bytes.NewReader(big), int64(len(big)))
		results <- result{"put multipart", err}
	}()
	go func() {
		got, _, err := c.Get(ctx, "before")
		if err == nil && !bytes.Equal(got, big) {
			err = errors.New("wrong content")
		}
		results <- result{"get", err}
	}()
	for range 3 {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
		}
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart: %v", err)
	}
	if warns.Load() < 3 {
		t.Fatalf("%d retries logged; want at least one per call", warns.Load())
	}
	for _, key := range []string{"small", "large"} {
		if _, _, err := c.Get(ctx, key); err != nil {
			t.Fatalf("get %s after outage: %v", key, err)
		}
	}
}

// readOnly hides a Reader's WriteTo, so io.Copy goes through Read.
type readOnly struct{ r io.Reader }

func (o readOnly) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestReadResumesAfterCrash kills MinIO while a large object is being
// streamed; the reader must resume from where it was once MinIO is back and
// still verify the whole object, through Read and through WriteTo (which
// reads on a second goroutine).
func TestReadResumesAfterCrash(t *testing.T) {
	m := testenv.MinIOForTest(t)
	c, warns := newTestClient(t, m, func(cfg *Config) {
		cfg.MaxRetries = 12
		cfg.RetryBaseDelay = 100 * time.Millisecond
		cfg.RetryMaxDelay = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := testData(24<<20, 4)
	if _, err := c.Put(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name string
		wrap func(*Reader) io.Reader
	}{
		{"Read", func(r *Reader) io.Reader { return readOnly{r} }},
		{"WriteTo", func(r *Reader) io.Reader { return r }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			warns.Store(0)
			r, err := c.GetReader(ctx, "big")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			head := make([]byte, 1<<20)
			if _, err := io.ReadFull(r, head); err != nil {
				t.Fatal(err)
			}
			if err := m.Kill(); err != nil {
				t.Fatal(err)
			}
			restarted := make(chan error, 1)
			go func() {
				time.Sleep(time.Second)
				restarted <- m.Start(ctx)
			}()
			var rest bytes.Buffer
			_, err = io.Copy(&rest, mode.wrap(r))
			if rerr := <-restarted; rerr != nil {
				t.Fatalf("restart: %v", rerr)
			}
			if err != nil {
				t.Fatalf("read across the crash: %v", err)
			}
			if !bytes.Equal(append(head, rest.Bytes()...), data) {
				t.Fatal("content differs after resuming")
			}
			if warns.Load() == 0 {
				t.Fatal("no resume logged: the crash did not interrupt the read, so the test proved nothing")
			}
		})
	}
}

// TestRetryBudget checks retries stop: with the server gone for good, a
// call fails after MaxRetries retries, naming the attempts, and a
// cancelled context stops the backoff at once.
func TestRetryBudget(t *testing.T) {
	m := testenv.MinIOForTest(t)
	c, warns := newTestClient(t, m, func(cfg *Config) {
		cfg.MaxRetries = 3
		cfg.RetryBaseDelay = 10 * time.Millisecond
		cfg.RetryMaxDelay = 20 * time.Millisecond
	})
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Put(context.Background(), "k", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("got %v, want a give-up error after 4 attempts", err)
	}
	if warns.Load() != 3 {
		t.Fatalf("%d retries, want 3", warns.Load())
	}

	slow := newTestClientOffline(t, m, func(cfg *Config) {
		cfg.MaxRetries = 10
		cfg.RetryBaseDelay = 5 * time.Second
		cfg.RetryMaxDelay = 10 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := slow.Put(ctx, "k", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancelled call took %v", el)
	}

	none := newTestClientOffline(t, m, func(cfg *Config) { cfg.MaxRetries = 0 })
	start = time.Now()
	if _, err := none.Put(context.Background(), "k", []byte("x")); err == nil || time.Since(start) > time.Second {
		t.Fatalf("MaxRetries 0: got %v after %v", err, time.Since(start))
	}
}

// newTestClientOffline is newTestClient for a server that is down: it
// does not create the bucket.
func newTestClientOffline(t *testing.T, m *testenv.MinIO, mutate func(*Config)) *Client {
	cfg := testConfig(m)
	mutate(&cfg)
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
