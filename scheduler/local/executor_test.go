package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// testJob is a job whose ranks are this test binary acting as a worker.
func testJob(t *testing.T, name string, workers int32, steps int64, ckptDir string, extra ...corev1.EnvVar) *v1alpha1.TrainingJob {
	t.Helper()
	j := validJob(name)
	j.Spec.Workers = workers
	j.Spec.Model.Steps = steps
	j.Spec.Template.Command = []string{os.Args[0]}
	j.Spec.Template.Env = append([]corev1.EnvVar{
		{Name: envTestWorker, Value: "1"},
		{Name: envCkptDir, Value: ckptDir},
		{Name: envStepTime, Value: "20ms"},
		{Name: envCkptEvery, Value: "5"},
	}, extra...)
	return j
}

type harness struct {
	e       *Executor
	dir     string
	ckpt    string
	cancel  context.CancelFunc
	stopped chan struct{}
}

func startExecutor(t *testing.T, dir, ckpt string, opts ...Option) *harness {
	t.Helper()
	base := []Option{
		WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithBackoff(100*time.Millisecond, time.Second),
		WithGracePeriod(5 * time.Second),
		WithInterval(50 * time.Millisecond),
		WithProgressInterval(100 * time.Millisecond),
		WithCheckpoints(fileCheckpoints{dir: ckpt}),
	}
	e, err := New(dir, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{e: e, dir: dir, ckpt: ckpt, cancel: cancel, stopped: make(chan struct{})}
	go func() {
		defer close(h.stopped)
		if err := e.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.stopped
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, e *Executor, name string, timeout time.Duration, ok func(*v1alpha1.TrainingJob) bool) *v1alpha1.TrainingJob {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := e.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met within %v; phase %s, status %+v", name, timeout, j.Status.Phase, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func phaseIs(p v1alpha1.TrainingJobPhase) func(*v1alpha1.TrainingJob) bool {
	return func(j *v1alpha1.TrainingJob) bool { return j.Status.Phase == p }
}

func logOf(t *testing.T, e *Executor, name string, rank int) string {
	t.Helper()
	var b bytes.Buffer
	if err := e.Logs(context.Background(), name, rank, false, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestGangRuns: a 2-rank gang starts together with the controller's
// environment, logs per rank, and ends Succeeded at the last step.
func TestGangRuns(t *testing.T) {
	h := startExecutor(t, t.TempDir(), t.TempDir())
	if _, err := h.e.Submit(context.Background(), testJob(t, "ok", 2, 20, h.ckpt)); err != nil {
		t.Fatal(err)
	}
	j := waitFor(t, h.e, "ok", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	if j.Status.Step != 20 || j.Status.GangGeneration != 1 || j.Status.Restarts != 0 || j.Status.LatestCheckpoint == nil {
		t.Fatalf("status %+v", j.Status)
	}
	for rank := range 2 {
		l := logOf(t, h.e, "ok", rank)
		for _, want := range []string{fmt.Sprintf("rank %d of 2 generation 1 resumes at step 0", rank), fmt.Sprintf("rank %d: done at step 20", rank), "exited: exit status 0"} {
			if !strings.Contains(l, want) {
				t.Errorf("rank %d log lacks %q:\n%s", rank, want, l)
			}
		}
	}
	if c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionSucceeded); c == nil || c.Status != "True" {
		t.Fatalf("conditions %+v", j.Status.Conditions)
	}
}

// TestGangRestart: rank 1 dies at step 12 in the first placement; the gang
// is torn down, waits its backoff, and is placed again resuming from the
// checkpoint at step 10 (at most one interval lost), then succeeds.
func TestGangRestart(t *testing.T) {
	h := startExecutor(t, t.TempDir(), t.TempDir())
	job := testJob(t, "crash", 2, 30, h.ckpt, corev1.EnvVar{Name: envCrash, Value: "1:12:1"})
	if _, err := h.e.Submit(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	j := waitFor(t, h.e, "crash", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	if j.Status.Restarts != 1 || j.Status.GangGeneration != 2 || j.Status.Step != 30 {
		t.Fatalf("status %+v", j.Status)
	}
	l0 := logOf(t, h.e, "crash", 0)
	l1 := logOf(t, h.e, "crash", 1)
	if !strings.Contains(l1, "rank 1: crashing at step 12") || !strings.Contains(l1, "exit status 3") {
		t.Fatalf("rank 1 log:\n%s", l1)
	}
	// Resumed from step 10: the crash at 12 lost 2 steps, less than the
	// interval of 5.
	if !strings.Contains(l0, "rank 0 of 2 generation 2 resumes at step 10") {
		t.Fatalf("rank 0 log:\n%s", l0)
	}
}

// TestBackoffLimit: a gang that always fails ends Failed after
// backoffLimit restarts.
func TestBackoffLimit(t *testing.T) {
	h := startExecutor(t, t.TempDir(), t.TempDir())
	job := testJob(t, "doomed", 1, 10, h.ckpt, corev1.EnvVar{Name: "BABELFISH_MODEL_CONFIG_BROKEN", Value: "1"})
	job.Spec.Template.Command = []string{"sh", "-c", "echo failing; exit 4"}
	limit := int32(2)
	job.Spec.BackoffLimit = &limit
	if _, err := h.e.Submit(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	j := waitFor(t, h.e, "doomed", 30*time.Second, phaseIs(v1alpha1.PhaseFailed))
	c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionFailed)
	if j.Status.Restarts != 2 || j.Status.GangGeneration != 3 || c == nil || c.Reason != "BackoffLimitExceeded" || !strings.Contains(c.Message, "exit status 4") {
		t.Fatalf("status %+v", j.Status)
	}
	if n := strings.Count(logOf(t, h.e, "doomed", 0), "failing"); n != 3 {
		t.Fatalf("ran %d times, want 3", n)
	}
}

// TestCancel: cancel sends SIGTERM; the ranks checkpoint and exit; the job
// ends Failed/Cancelled and cannot be cancelled twice.
func TestCancel(t *testing.T) {
	h := startExecutor(t, t.TempDir(), t.TempDir())
	if _, err := h.e.Submit(context.Background(), testJob(t, "long", 2, 100000, h.ckpt)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, h.e, "long", 30*time.Second, func(j *v1alpha1.TrainingJob) bool { return j.Status.Step >= 5 })
	if _, err := h.e.Cancel(context.Background(), "long"); err != nil {
		t.Fatal(err)
	}
	j := waitFor(t, h.e, "long", 30*time.Second, phaseIs(v1alpha1.PhaseFailed))
	if c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionFailed); c == nil || c.Reason != ReasonCancelled {
		t.Fatalf("conditions %+v", j.Status.Conditions)
	}
	if l := logOf(t, h.e, "long", 0); !strings.Contains(l, "SIGTERM: checkpointed") {
		t.Fatalf("rank 0 did not stop gracefully:\n%s", l)
	}
	if _, err := h.e.Cancel(context.Background(), "long"); !errors.Is(err, ErrFinished) {
		t.Fatalf("second cancel: %v, want ErrFinished", err)
	}
	if _, err := h.e.Cancel(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel unknown: %v, want ErrNotFound", err)
	}
}

// TestSurvivesRestart: stopping the executor mid-job checkpoints the gang;
// a new executor on the same directory places it again and it resumes.
func TestSurvivesRestart(t *testing.T) {
	dir, ckpt := t.TempDir(), t.TempDir()
	h := startExecutor(t, dir, ckpt)
	if _, err := h.e.Submit(context.Background(), testJob(t, "persist", 2, 60, ckpt)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, h.e, "persist", 30*time.Second, func(j *v1alpha1.TrainingJob) bool { return j.Status.Step >= 10 })
	h.stop()
	j, err := h.e.Get("persist")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status.Phase != v1alpha1.PhasePending || j.Status.Step < 10 {
		t.Fatalf("after stop: %+v", j.Status)
	}
	stoppedAt := j.Status.Step

	h2 := startExecutor(t, dir, ckpt)
	j = waitFor(t, h2.e, "persist", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	if j.Status.GangGeneration != 2 || j.Status.Restarts != 0 {
		t.Fatalf("status %+v", j.Status)
	}
	if l := logOf(t, h2.e, "persist", 0); !strings.Contains(l, fmt.Sprintf("generation 2 resumes at step %d", stoppedAt)) {
		t.Fatalf("did not resume at step %d:\n%s", stoppedAt, l)
	}
}

// TestLeftoverKilled: a worker a crashed executor left running is killed by
// the next one, which places the job again.
func TestLeftoverKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	rec := record{Job: *Defaulted(validJob("orphan")), Procs: []procRecord{{Rank: 0, PID: cmd.Process.Pid, Cmdline: "sleep 600"}}}
	rec.Job.Status.Phase = v1alpha1.PhaseRunning
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := &Executor{dir: dir, log: slog.Default()}
	if err := e.save(&rec); err != nil {
		t.Fatal(err)
	}
	e2, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("leftover worker still running")
	}
	j, err := e2.Get("orphan")
	if err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionAdmitted); j.Status.Phase != v1alpha1.PhasePending || c == nil || c.Reason != ReasonStopped {
		t.Fatalf("status %+v", j.Status)
	}
}

// TestPreemption: on a machine with one GPU, a higher-priority job
// preempts the running one (which checkpoints), runs, and then the first
// is placed again and finishes from its checkpoint.
func TestPreemption(t *testing.T) {
	oneGPU := func(context.Context) ([]core.NodeInfo, error) {
		return []core.NodeInfo{MachineNode("Fake-GPU", []core.GPUInfo{{Index: 0, Healthy: true}})}, nil
	}
	h := startExecutor(t, t.TempDir(), t.TempDir(), WithNodes(oneGPU))
	low := testJob(t, "low", 1, 80, h.ckpt)
	low.Spec.GPUsPerWorker = 1
	if _, err := h.e.Submit(context.Background(), low); err != nil {
		t.Fatal(err)
	}
	waitFor(t, h.e, "low", 30*time.Second, func(j *v1alpha1.TrainingJob) bool { return j.Status.Step >= 5 })
	high := testJob(t, "high", 1, 10, h.ckpt)
	high.Spec.GPUsPerWorker = 1
	high.Spec.Priority = 100
	if _, err := h.e.Submit(context.Background(), high); err != nil {
		t.Fatal(err)
	}
	hj := waitFor(t, h.e, "high", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	lj := waitFor(t, h.e, "low", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	if lj.Status.Evictions != 1 || lj.Status.GangGeneration != 2 || lj.Status.Step != 80 {
		t.Fatalf("low: %+v", lj.Status)
	}
	if hj.Status.Evictions != 0 || hj.Status.GangGeneration != 1 {
		t.Fatalf("high: %+v", hj.Status)
	}
	l := logOf(t, h.e, "low", 0)
	if !strings.Contains(l, "SIGTERM: checkpointed") || !strings.Contains(l, "generation 2 resumes at step") || !strings.Contains(l, `gpus "0"`) {
		t.Fatalf("low log:\n%s", l)
	}
}

// TestAPI drives the executor through the HTTP job API and its client.
func TestAPI(t *testing.T) {
	h := startExecutor(t, t.TempDir(), t.TempDir())
	srv := httptest.NewServer(Handler(h.e))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Submit(ctx, testJob(t, "api", 2, 15, h.ckpt)); err != nil {
		t.Fatal(err)
	}
	// Follow the log to the end while the job runs.
	var (
		wg     sync.WaitGroup
		follow bytes.Buffer
		ferr   error
	)
	wg.Go(func() { ferr = c.Logs(ctx, "api", 1, true, &follow) })

	errCases := []struct {
		name string
		call func() error
		want error
		msg  string
	}{
		{"duplicate", func() error { _, err := c.Submit(ctx, testJob(t, "api", 1, 5, h.ckpt)); return err }, ErrExists, "already exists"},
		{"invalid", func() error { _, err := c.Submit(ctx, testJob(t, "api2", 0, 5, h.ckpt)); return err }, ErrInvalid, "spec.workers 0"},
		{"unknown queue", func() error {
			j := testJob(t, "api3", 1, 5, h.ckpt)
			j.Spec.Queue = "research"
			_, err := c.Submit(ctx, j)
			return err
		}, ErrInvalid, `spec.queue "research"`},
		{"get unknown", func() error { _, err := c.Get(ctx, "nope"); return err }, ErrNotFound, "nope"},
		{"logs bad rank", func() error { return c.Logs(ctx, "api", 5, false, &bytes.Buffer{}) }, ErrInvalid, "ranks 0..1"},
		{"cancel unknown", func() error { _, err := c.Cancel(ctx, "nope"); return err }, ErrNotFound, "nope"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	waitFor(t, h.e, "api", 30*time.Second, phaseIs(v1alpha1.PhaseSucceeded))
	wg.Wait()
	if ferr != nil || !strings.Contains(follow.String(), "rank 1: done at step 15") {
		t.Fatalf("followed log (err %v):\n%s", ferr, follow.String())
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "api" || list[0].Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("list %v: %+v", err, list)
	}
	if _, err := c.Cancel(ctx, "api"); !errors.Is(err, ErrFinished) {
		t.Fatalf("cancel finished: %v", err)
	}
}
