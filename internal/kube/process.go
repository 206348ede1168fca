package kube

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// part is one process of the cluster: its name (for errors and logs), its
// command and its log file.
type part struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// startPart starts bin with args, its output in logDir/<name>.log. The
// process gets its own process group, so Stop reaches its children too, and
// SIGKILL if the starting process dies first.
func startPart(name, bin string, args []string, logDir string, env []string) (*part, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kube: %s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("kube: %s: start %s: %w", name, bin, err)
	}
	p := &part{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *part) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *part) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("kube: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// failure explains a part that did not come up: its name, why, its log's
// path and the log's last lines.
func (p *part) failure(why error) error {
	state := "still running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.waitErr)
	}
	return &PartError{Part: p.name, Log: p.logPath, Err: fmt.Errorf("%w (process %s)", why, state), Tail: tailFile(p.logPath, 20)}
}

// PartError says which part of the cluster failed to start, and where its
// log is.
type PartError struct {
	Part string // e.g. "kubelet"
	Log  string // the part's log file
	Err  error
	Tail string // the log's last lines
}

func (e *PartError) Error() string {
	return fmt.Sprintf("kube: %s did not start: %v; its log is %s; last lines:\n%s", e.Part, e.Err, e.Log, e.Tail)
}

func (e *PartError) Unwrap() error { return e.Err }

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// waitFor polls check every 200 ms until it returns nil, p exits, ctx ends
// or timeout passes; the error names p and its log.
func waitFor(ctx context.Context, p *part, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil && p.exited() {
			return p.failure(errors.New("it exited during start"))
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("not ready after %v: %w", timeout, last)
			if p == nil {
				return err
			}
			return p.failure(err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// httpOK is a readiness check: GET url answers 200. TLS is not verified:
// these are the cluster's own loopback health endpoints.
func httpOK(url string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // own loopback health endpoint
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
