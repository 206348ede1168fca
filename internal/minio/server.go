package minio

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
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"

	"babelfish.dev/babelfish/internal/tools"
)

// Defaults for Start; each can be changed with an option.
const (
	DefaultStartTimeout = 60 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// logTail bounds how much of minio's output is kept for errors.
	logTail = 16 << 10
)

// Server is a running (or stopped, restartable) `minio server` process on
// loopback. Endpoint, the credentials and DataDir stay the same across
// Shutdown/Kill and Start, so clients built before a restart keep working.
type Server struct {
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
	tail         *tailBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	// stopped is set by Stop; a stopped MinIO cannot be started again.
	stopped bool
}

// Option changes how Start runs the server.
type Option func(*Server)

// WithDataDir keeps the objects in dir (created if missing) instead of
// a temporary directory, so state survives across runs (`babelfish up`).
// Stop leaves a given directory in place.
func WithDataDir(dir string) Option {
	return func(m *Server) { m.DataDir = dir }
}

// WithCredentials sets the root credentials instead of random ones.
func WithCredentials(accessKey, secretKey string) Option {
	return func(m *Server) { m.AccessKey, m.SecretKey = accessKey, secretKey }
}

// WithAddress serves the S3 API on addr (host:port) instead of a free
// loopback port.
func WithAddress(addr string) Option {
	return func(m *Server) { m.Endpoint = addr }
}

// WithStartTimeout bounds how long Start waits for /minio/health/live.
func WithStartTimeout(d time.Duration) Option {
	return func(m *Server) { m.startTimeout = d }
}

// WithLogger sets the logger for lifecycle events (start, stop).
func WithLogger(l *slog.Logger) Option {
	return func(m *Server) { m.log = l }
}

// WithOutput copies minio's stdout and stderr to w as well as to the
// in-memory tail used in errors.
func WithOutput(w io.Writer) Option {
	return func(m *Server) { m.logOut = w }
}

// Start starts `minio server` from the tools cache on free loopback
// ports with random root credentials, and waits until /minio/health/live
// answers and the S3 API serves these credentials. ctx bounds only the
// start; the server runs until Stop.
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	bin, err := tools.Tool("minio")
	if err != nil {
		return nil, err
	}
	m := &Server{
		bin:          bin,
		startTimeout: DefaultStartTimeout,
		stopTimeout:  DefaultStopTimeout,
		log:          slog.New(slog.DiscardHandler),
		tail:         &tailBuffer{max: logTail},
	}
	for _, o := range opts {
		o(m)
	}
	if m.AccessKey == "" || m.SecretKey == "" {
		// MinIO wants at least 3 and 8 characters.
		m.AccessKey, m.SecretKey = "bf"+randomHex(9), randomHex(20)
	}
	if m.DataDir == "" {
		dir, err := os.MkdirTemp("", "babelfish-minio-")
		if err != nil {
			return nil, fmt.Errorf("minio: minio data dir: %w", err)
		}
		m.DataDir, m.ownsDir = dir, true
	} else if err := os.MkdirAll(m.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("minio: minio data dir %s: %w", m.DataDir, err)
	}
	fixedAddr := m.Endpoint != ""
	// A free port found by listening and closing can be taken by another
	// process before minio binds it; try a few fresh ports in that case.
	for attempt := 1; ; attempt++ {
		if !fixedAddr {
			if m.Endpoint, err = freeAddr(); err != nil {
				m.cleanupDir()
				return nil, err
			}
		}
		if m.ConsoleEndpoint, err = freeAddr(); err != nil {
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
func (m *Server) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("minio: minio was stopped for good (Stop); start a new one")
	}
	if m.cmd != nil {
		return fmt.Errorf("minio: minio at %s is already running", m.Endpoint)
	}
	// minio binds with SO_REUSEPORT, so it would share a port with another
	// server instead of failing; make sure the port is free first.
	if err := portFree(m.Endpoint); err != nil {
		return err
	}
	var out io.Writer = m.tail
	if m.logOut != nil {
		out = io.MultiWriter(m.tail, m.logOut)
	}
	cmd := exec.Command(m.bin, "server", m.DataDir,
		"--address", m.Endpoint,
		"--console-address", m.ConsoleEndpoint)
	cmd.Env = append(baseEnv(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("minio: start %s: %w", m.bin, err)
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
func (m *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
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
			status, err := get(ctx, client, live, nil)
			isLive = err == nil && status == http.StatusOK
		}
		if isLive {
			status, err := get(ctx, client, "http://"+m.Endpoint+"/", m)
			switch {
			case err == nil && status == http.StatusOK:
				oks++
				continue
			case err == nil && status == http.StatusForbidden:
				return fmt.Errorf("minio: another server answers on %s (it refused this server's credentials)", m.Endpoint)
			}
			oks = 0
		}
		select {
		case <-exited:
			return fmt.Errorf("minio: minio exited before %s answered", live)
		case <-ctx.Done():
			return fmt.Errorf("minio: minio not ready at %s within %v: %w", m.Endpoint, m.startTimeout, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// get makes a GET and returns its status; with m set it is signed
// with m's credentials.
func get(ctx context.Context, client *http.Client, url string, m *Server) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if m != nil {
		req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
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

// emptySHA256 is the sha256 of an empty request body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Shutdown stops the process with SIGTERM (SIGKILL after the stop timeout)
// and keeps the data directory, so Start can bring it back. A MinIO that is
// not running is left as it is.
func (m *Server) Shutdown() error {
	return m.halt(syscall.SIGTERM)
}

// Kill stops the process at once with SIGKILL, as a crash would, and keeps
// the data directory, so Start can bring it back.
func (m *Server) Kill() error {
	return m.halt(syscall.SIGKILL)
}

// Restart is Shutdown followed by Start.
func (m *Server) Restart(ctx context.Context) error {
	if err := m.Shutdown(); err != nil {
		return err
	}
	return m.Start(ctx)
}

// Running reports whether the server process is up.
func (m *Server) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Stop shuts the server down for good and removes the data directory if
// Start created it. It is safe to call more than once.
func (m *Server) Stop() error {
	err := m.halt(syscall.SIGTERM)
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cleanupDir()
	return err
}

// PID is the server's process id, or 0 when it is not running; fault tests
// use it to pause the process (SIGSTOP) or read its resource use.
func (m *Server) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// URL is the S3 endpoint with its scheme.
func (m *Server) URL() string { return "http://" + m.Endpoint }

// Output returns the last part of minio's stdout and stderr.
func (m *Server) Output() string { return m.tail.String() }

func (m *Server) halt(sig syscall.Signal) error {
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

func (m *Server) cleanupDir() {
	if m.ownsDir && m.DataDir != "" {
		_ = os.RemoveAll(m.DataDir)
	}
}

// baseEnv is the caller's environment without MINIO_* settings, so a
// developer's shell cannot change the server under test.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("minio: find a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("minio: free port %s: %w", addr, err)
	}
	return addr, nil
}

func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("minio: minio address %s: %w", addr, err)
	}
	return l.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
