package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
)

// Defaults for StartMinIO; each can be changed with an option.
const (
	minioDefaultStartTimeout = 60 * time.Second
	minioDefaultStopTimeout  = 10 * time.Second
	// minioLogTail bounds how much of minio's output is kept for errors.
	minioLogTail = 16 << 10
)

// MinIO is a running (or stopped, restartable) `minio server` process on
// loopback. Endpoint, the credentials and DataDir stay the same across
// Shutdown/Kill and Start, so clients built before a restart keep working.
type MinIO struct {
	// Endpoint is the S3 API address, host:port, without scheme.
	Endpoint string
	// ConsoleEndpoint is the web console address, host:port.
	ConsoleEndpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey string
	SecretKey string
	// DataDir holds the objects; it survives Shutdown, Kill and Start.
	DataDir string

	bin          string
	ownsDir      bool
	startTimeout time.Duration
	stopTimeout  time.Duration
	log          *slog.Logger
	logOut       io.Writer
	tail         *minioTailBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	// stopped is set by Stop; a stopped MinIO cannot be started again.
	stopped bool
}

// MinIOOption changes how StartMinIO runs the server.
type MinIOOption func(*MinIO)

// WithMinIODataDir keeps the objects in dir (created if missing) instead of
// a temporary directory, so state survives across runs (`babelfish up`).
// Stop leaves a given directory in place.
func WithMinIODataDir(dir string) MinIOOption {
	return func(m *MinIO) { m.DataDir = dir }
}

// WithMinIOCredentials sets the root credentials instead of random ones.
func WithMinIOCredentials(accessKey, secretKey string) MinIOOption {
	return func(m *MinIO) { m.AccessKey, m.SecretKey = accessKey, secretKey }
}

// WithMinIOAddress serves the S3 API on addr (host:port) instead of a free
// loopback port.
func WithMinIOAddress(addr string) MinIOOption {
	return func(m *MinIO) { m.Endpoint = addr }
}

// WithMinIOStartTimeout bounds how long Start waits for /minio/health/live.
func WithMinIOStartTimeout(d time.Duration) MinIOOption {
	return func(m *MinIO) { m.startTimeout = d }
}

// WithMinIOLogger sets the logger for lifecycle events (start, stop).
func WithMinIOLogger(l *slog.Logger) MinIOOption {
	return func(m *MinIO) { m.log = l }
}

// WithMinIOOutput copies minio's stdout and stderr to w as well as to the
// in-memory tail used in errors.
func WithMinIOOutput(w io.Writer) MinIOOption {
	return func(m *MinIO) { m.logOut = w }
}

// StartMinIO starts `minio server` from the tools cache on free loopback
// ports with random root credentials, and waits until /minio/health/live
// answers and the S3 API serves these credentials. ctx bounds only the
// start; the server runs until Stop.
func StartMinIO(ctx context.Context, opts ...MinIOOption) (*MinIO, error) {
	bin, err := Tool("minio")
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		bin:          bin,
		startTimeout: minioDefaultStartTimeout,
		stopTimeout:  minioDefaultStopTimeout,
		log:          slog.New(slog.DiscardHandler),
		tail:         &minioTailBuffer{max: minioLogTail},
	}
	for _, o := range opts {
		o(m)
	}
	if m.AccessKey == "" || m.SecretKey == "" {
		// MinIO wants at least 3 and 8 characters.
		m.AccessKey, m.SecretKey = "bf"+minioRandomHex(9), minioRandomHex(20)
	}
	if m.DataDir == "" {
		dir, err := os.MkdirTemp("", "babelfish-minio-")
		if err != nil {
			return nil, fmt.Errorf("testenv: minio data dir: %w", err)
		}
		m.DataDir, m.ownsDir = dir, true
	} else if err := os.MkdirAll(m.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: minio data dir %s: %w", m.DataDir, err)
	}
	fixedAddr := m.Endpoint != ""
	// A free port found by listening and closing can be taken by another
	// process before minio binds it; try a few fresh ports in that case.
	for attempt := 1; ; attempt++ {
		if !fixedAddr {
			if m.Endpoint, err = minioFreeAddr(); err != nil {
				m.cleanupDir()
				return nil, err
			}
		}
		if m.ConsoleEndpoint, err = minioFreeAddr(); err != nil {
			m.cleanupDir()
			return nil, err
		}
		err = m.Start(ctx)
		if err == nil {
			return m, nil
		}
		taken := strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "another server answers")
		if fixedAddr || attempt == 3 || !taken {
			m.cleanupDir()
			return nil, err
		}
	}
}

// Start runs the server again on the same address, credentials and data
// directory after Shutdown or Kill, and waits until it is ready.
func (m *MinIO) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("testenv: minio was stopped for good (Stop); start a new one")
	}
	if m.cmd != nil {
		return fmt.Errorf("testenv: minio at %s is already running", m.Endpoint)
	}
	// minio binds with SO_REUSEPORT, so it would share a port with another
	// server instead of failing; make sure the port is free first.
	if err := minioPortFree(m.Endpoint); err != nil {
		return err
	}
	var out io.Writer = m.tail
	if m.logOut != nil {
		out = io.MultiWriter(m.tail, m.logOut)
	}
	cmd := exec.Command(m.bin, "server", m.DataDir,
		"--address", m.Endpoint,
		"--console-address", m.ConsoleEndpoint)
	cmd.Env = append(minioBaseEnv(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: start %s: %w", m.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is in the log tail if it matters
		close(done)
	}()
	m.cmd, m.done = cmd, done
	m.log.Info("minio starting", "endpoint", m.Endpoint, "dir", m.DataDir, "pid", cmd.Process.Pid)

	if err := m.waitReady(ctx, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		m.cmd, m.done = nil, nil
		return fmt.Errorf("%w\nminio output (tail):\n%s", err, m.tail.String())
	}
	m.log.Info("minio live", "endpoint", m.Endpoint)
	return nil
}

// waitReady polls /minio/health/live until it answers 200, then makes
// signed ListBuckets calls on fresh connections until several succeed: the
// S3 API is up, and the server answering is this one (another server on the
// port would reject these credentials). It gives up when the process exits,
// the start timeout passes or ctx ends.
func (m *MinIO) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, m.startTimeout)
	defer cancel()
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	live := "http://" + m.Endpoint + "/minio/health/live"
	const wantOK = 4
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for isLive, oks := false, 0; oks < wantOK; {
		if !isLive {
			status, err := minioGet(ctx, client, live, nil)
			isLive = err == nil && status == http.StatusOK
		}
		if isLive {
			status, err := minioGet(ctx, client, "http://"+m.Endpoint+"/", m)
			switch {
			case err == nil && status == http.StatusOK:
				oks++
				continue
			case err == nil && status == http.StatusForbidden:
				return fmt.Errorf("testenv: another server answers on %s (it refused this server's credentials)", m.Endpoint)
			}
			oks = 0
		}
		select {
		case <-exited:
			return fmt.Errorf("testenv: minio exited before %s answered", live)
		case <-ctx.Done():
			return fmt.Errorf("testenv: minio not ready at %s within %v: %w", m.Endpoint, m.startTimeout, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// minioGet makes a GET and returns its status; with m set it is signed
// with m's credentials.
func minioGet(ctx context.Context, client *http.Client, url string, m *MinIO) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if m != nil {
		req.Header.Set("X-Amz-Content-Sha256", minioEmptySHA256)
		req = signer.SignV4(*req, m.AccessKey, m.SecretKey, "", "us-east-1")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// minioEmptySHA256 is the sha256 of an empty request body.
const minioEmptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Shutdown stops the process with SIGTERM (SIGKILL after the stop timeout)
// and keeps the data directory, so Start can bring it back. A MinIO that is
// not running is left as it is.
func (m *MinIO) Shutdown() error {
	return m.halt(syscall.SIGTERM)
}

// Kill stops the process at once with SIGKILL, as a crash would, and keeps
// the data directory, so Start can bring it back.
func (m *MinIO) Kill() error {
	return m.halt(syscall.SIGKILL)
}

// Restart is Shutdown followed by Start.
func (m *MinIO) Restart(ctx context.Context) error {
	if err := m.Shutdown(); err != nil {
		return err
	}
	return m.Start(ctx)
}

// Running reports whether the server process is up.
func (m *MinIO) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Stop shuts the server down for good and removes the data directory if
// StartMinIO created it. It is safe to call more than once.
func (m *MinIO) Stop() error {
	err := m.halt(syscall.SIGTERM)
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cleanupDir()
	return err
}

// PID is the server's process id, or 0 when it is not running; fault tests
// use it to pause the process (SIGSTOP) or read its resource use.
func (m *MinIO) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// URL is the S3 endpoint with its scheme.
func (m *MinIO) URL() string { return "http://" + m.Endpoint }

// Output returns the last part of minio's stdout and stderr.
func (m *MinIO) Output() string { return m.tail.String() }

func (m *MinIO) halt(sig syscall.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return nil
	}
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = cmd.Process.Kill()
	}
	select {
	case <-done:
	case <-time.After(m.stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
	m.log.Info("minio stopped", "endpoint", m.Endpoint, "signal", sig.String())
	return nil
}

func (m *MinIO) cleanupDir() {
	if m.ownsDir && m.DataDir != "" {
		_ = os.RemoveAll(m.DataDir)
	}
}

// MinIOForTest starts a MinIO for one test and stops it when the test ends.
// A missing binary fails the test with the "run `make tools`" message; it
// never skips.
func MinIOForTest(t testing.TB, opts ...MinIOOption) *MinIO {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*minioDefaultStartTimeout)
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

// minioBaseEnv is the caller's environment without MINIO_* settings, so a
// developer's shell cannot change the server under test.
func minioBaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

func minioFreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("testenv: find a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("testenv: free port %s: %w", addr, err)
	}
	return addr, nil
}

func minioPortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("testenv: minio address %s: %w", addr, err)
	}
	return l.Close()
}

func minioRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// minioTailBuffer keeps the last max bytes written to it.
type minioTailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *minioTailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *minioTailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
