package local

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/core"
)

// LocalNode is the name of the one node the executor schedules on.
const LocalNode = "local"

// Defaults of the executor's options.
const (
	DefaultBackoffBase      = 10 * time.Second
	DefaultBackoffMax       = 5 * time.Minute
	DefaultGracePeriod      = 2 * time.Minute
	DefaultInterval         = time.Second
	DefaultProgressInterval = 5 * time.Second
)

// Errors the executor's callers tell apart (the job API maps them to
// HTTP statuses).
var (
	ErrNotFound = errors.New("no such job")
	ErrExists   = errors.New("job already exists")
	ErrInvalid  = errors.New("invalid job")
	ErrFinished = errors.New("job already finished")
)

// Condition reasons the executor writes besides the controller's.
const (
	ReasonCancelled = "Cancelled"
	// ReasonStopped: `up` stopped; the gang checkpointed and is placed
	// again, resuming, when `up` starts next.
	ReasonStopped = "ExecutorStopped"
)

// CheckpointInfo is how far a job's training got: its newest committed
// checkpoint.
type CheckpointInfo struct {
	Step int64
	Path string
	Time time.Time
	Loss float64
	Eval map[string]float64
	// Final says the trainer ended here by itself: every step done, or its
	// wall-clock budget spent. Rank 0 exiting 0 after a checkpoint that is
	// not final was stopped from outside, and the job is not done.
	Final bool
}

// Checkpoints reads a job's newest committed checkpoint; (nil, nil) means
// none yet. `up` implements it over the object store with the trainer's
// own reader, so this package needs neither.
type Checkpoints interface {
	Latest(ctx context.Context, job string) (*CheckpointInfo, error)
}

// NodeSource says what the machine offers: normally one node, LocalNode,
// with the GPU agent's GPUs.
type NodeSource func(ctx context.Context) ([]core.NodeInfo, error)

// Option configures an Executor.
type Option func(*Executor)

// WithBinary runs path as `babelfish` in workers (default: this
// executable).
func WithBinary(path string) Option { return func(e *Executor) { e.self = path } }

// WithBaseEnv is the environment every worker starts from (default: this
// process's); the object store's BABELFISH_S3_* belong here.
func WithBaseEnv(env []string) Option { return func(e *Executor) { e.base = slices.Clone(env) } }

// WithNodes sets where jobs may run (default: this machine without GPUs).
func WithNodes(n NodeSource) Option { return func(e *Executor) { e.nodes = n } }

// WithCheckpoints lets the executor report step, loss and the latest
// checkpoint, and tell a finished job from one stopped from outside.
func WithCheckpoints(c Checkpoints) Option { return func(e *Executor) { e.ckpts = c } }

// WithLogger sets the executor's logger.
func WithLogger(l *slog.Logger) Option { return func(e *Executor) { e.log = l } }

// WithBackoff bounds the wait before a failed gang is placed again:
// base x 2^(restarts-1), at most max.
func WithBackoff(base, max time.Duration) Option {
	return func(e *Executor) { e.backoffBase, e.backoffMax = base, max }
}

// WithGracePeriod is how long a stopped rank has to checkpoint and exit
// before it is killed.
func WithGracePeriod(d time.Duration) Option { return func(e *Executor) { e.grace = d } }

// WithInterval is how often the executor schedules when nothing wakes it.
func WithInterval(d time.Duration) Option { return func(e *Executor) { e.interval = d } }

// WithProgressInterval is how often running jobs' checkpoints are read.
func WithProgressInterval(d time.Duration) Option { return func(e *Executor) { e.progressEvery = d } }

// WithQueues gives the core queues to admit jobs through; without, a job
// naming a queue is refused.
func WithQueues(qs ...core.Queue) Option { return func(e *Executor) { e.queues = slices.Clone(qs) } }

// WithScorer picks the core's node scorer (default: best fit).
func WithScorer(s core.Scorer) Option { return func(e *Executor) { e.scorer = s } }

// WithOnFinish is called, in its own goroutine, when a job succeeds or
// fails; `up` hangs automatic promotion on it.
func WithOnFinish(f func(context.Context, v1alpha1.TrainingJob)) Option {
	return func(e *Executor) { e.onFinish = f }
}

// Executor runs TrainingJobs as local processes: the same scheduling core
// as the Kubernetes controller places each gang on this machine's GPUs,
// and each rank is a `babelfish trainer` child with the controller's
// environment. Job records live under its directory, so they survive a
// restart.
type Executor struct {
	dir           string
	self          string
	base          []string
	nodes         NodeSource
	ckpts         Checkpoints
	log           *slog.Logger
	backoffBase   time.Duration
	backoffMax    time.Duration
	grace         time.Duration
	interval      time.Duration
	progressEvery time.Duration
	queues        []core.Queue
	scorer        core.Scorer
	onFinish      func(context.Context, v1alpha1.TrainingJob)

	wake    chan struct{}
	exits   sync.WaitGroup // one per started process
	running sync.Mutex     // held by Run

	mu      sync.Mutex
	jobs    map[string]*record
	closing bool
	baseCtx context.Context
}

// record is one job: what is persisted, and its live gang.
type record struct {
	Job v1alpha1.TrainingJob `json:"job"`
	// Procs are the live ranks' processes, so a restarted executor can
	// kill what a crashed one left behind.
	Procs []procRecord `json:"procs,omitempty"`
	// Stopping says why the gang is being torn down ("" while it runs).
	Stopping string `json:"stopping,omitempty"`
	// Why is the message of a pending failure or preemption.
	Why string `json:"why,omitempty"`

	gang *gang
}

type procRecord struct {
	Rank    int    `json:"rank"`
	PID     int    `json:"pid"`
	Cmdline string `json:"cmdline"`
}

// Reasons a gang is torn down.
const (
	stopDone     = "done"     // rank 0 exited 0
	stopFailure  = "failure"  // a rank died
	stopCancel   = "cancel"   // the user cancelled
	stopPreempt  = "preempt"  // the core made room for another job
	stopShutdown = "shutdown" // the executor is stopping
)

type gang struct {
	gen      int32
	bindings []core.Binding
	procs    []*proc
	live     int
	started  time.Time
	kill     *time.Timer
}

type proc struct {
	rank   int
	cmd    *exec.Cmd
	exited bool
	err    error
}

// New opens (or creates) the executor's state under dir: job records in
// dir/jobs, logs in dir/logs, work directories in dir/work. Jobs a previous
// executor left running have their leftover processes killed and wait to
// be placed again, resuming from their last checkpoint.
func New(dir string, opts ...Option) (*Executor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("local executor: own executable: %w", err)
	}
	e := &Executor{
		dir:           dir,
		self:          self,
		base:          os.Environ(),
		log:           slog.Default(),
		backoffBase:   DefaultBackoffBase,
		backoffMax:    DefaultBackoffMax,
		grace:         DefaultGracePeriod,
		interval:      DefaultInterval,
		progressEvery: DefaultProgressInterval,
		scorer:        core.BestFit{},
		wake:          make(chan struct{}, 1),
		jobs:          map[string]*record{},
		baseCtx:       context.Background(),
	}
	e.nodes = func(context.Context) ([]core.NodeInfo, error) { return []core.NodeInfo{MachineNode("", nil)}, nil }
	for _, o := range opts {
		o(e)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"backoff base", e.backoffBase}, {"backoff max", e.backoffMax}, {"grace period", e.grace}, {"interval", e.interval}, {"progress interval", e.progressEvery}} {
		if d.v <= 0 {
			return nil, fmt.Errorf("local executor %s %v: must be > 0", d.name, d.v)
		}
	}
	if e.backoffMax < e.backoffBase {
		return nil, fmt.Errorf("local executor backoff max %v: must be >= backoff base %v", e.backoffMax, e.backoffBase)
	}
	for _, sub := range []string{"jobs", "logs", "work"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("local executor state dir: %w", err)
		}
	}
	if err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

// MachineNode is this machine as one node of the core: its CPUs and
// memory, and the GPUs the agent reports (none without one).
func MachineNode(model string, gpus []core.GPUInfo) core.NodeInfo {
	n := core.NodeInfo{Name: LocalNode, CPUMilli: int64(runtime.NumCPU()) * 1000, GPUModel: model, GPUs: slices.Clone(gpus)}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err == nil {
		n.MemoryMiB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	return n
}

func (e *Executor) recordPath(name string) string {
	return filepath.Join(e.dir, "jobs", name+".json")
}

// LogPath is the file one rank's output goes to (every placement of the
// gang appends to it).
func (e *Executor) LogPath(job string, rank int) string {
	return filepath.Join(e.dir, "logs", job, fmt.Sprintf("rank-%d.log", rank))
}

// load reads the job records and settles what a previous executor left.
func (e *Executor) load() error {
	entries, err := os.ReadDir(filepath.Join(e.dir, "jobs"))
	if err != nil {
		return fmt.Errorf("local executor: %w", err)
	}
	now := time.Now()
	for _, ent := range entries {
		if ent.IsDir() || !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		p := filepath.Join(e.dir, "jobs", ent.Name())
		raw, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("local executor: %w", err)
		}
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("local executor: job record %s: %w", p, err)
		}
		for _, pr := range r.Procs {
			if killLeftover(pr) {
				e.log.Warn("killed a worker left by a previous executor", "job", r.Job.Name, "rank", pr.Rank, "pid", pr.PID)
			}
		}
		r.Procs = nil
		st := &r.Job.Status
		if !st.Phase.Terminal() {
			switch {
			case r.Stopping == stopCancel:
				e.finish(&r, now, v1alpha1.PhaseFailed, ReasonCancelled, "cancelled")
			case st.Phase == v1alpha1.PhaseRunning || st.Phase == v1alpha1.PhaseAdmitted:
				setPending(&r, now, ReasonStopped, "the executor stopped while the gang ran; it is placed again from its last checkpoint")
			}
		}
		r.Stopping = ""
		e.jobs[r.Job.Name] = &r
		if err := e.save(&r); err != nil {
			return err
		}
	}
	return nil
}

// killLeftover kills a process group a previous executor started, if the
// process is still the one it recorded (a PID can be reused).
func killLeftover(pr procRecord) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pr.PID))
	if err != nil || strings.ReplaceAll(strings.TrimRight(string(raw), "\x00"), "\x00", " ") != pr.Cmdline {
		return false
	}
	_ = syscall.Kill(-pr.PID, syscall.SIGKILL)
	return true
}

// save writes a record atomically. Called with e.mu held.
func (e *Executor) save(r *record) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("local executor: job %s: %w", r.Job.Name, err)
	}
	p := e.recordPath(r.Job.Name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("local executor: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("local executor: %w", err)
	}
	return nil
}

func (e *Executor) saveLogged(r *record) {
	if err := e.save(r); err != nil {
		e.log.Error("saving job record", "job", r.Job.Name, "err", err)
	}
}

func (e *Executor) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Submit validates j, fills the CRD's defaults and queues it.
func (e *Executor) Submit(_ context.Context, j *v1alpha1.TrainingJob) (*v1alpha1.TrainingJob, error) {
	if err := Validate(j); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if q := j.Spec.Queue; q != "" && !slices.ContainsFunc(e.queues, func(x core.Queue) bool { return x.Name == q }) {
		names := make([]string, len(e.queues))
		for i, x := range e.queues {
			names[i] = x.Name
		}
		return nil, fmt.Errorf("%w: spec.queue %q: not a queue of this executor (queues: %v)", ErrInvalid, q, names)
	}
	job := Defaulted(j)
	job.Namespace = ""
	job.Status = v1alpha1.TrainingJobStatus{}
	now := time.Now()
	job.CreationTimestamp = metav1.NewTime(now)
	job.Generation = 1
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return nil, errors.New("local executor: stopping")
	}
	if _, ok := e.jobs[job.Name]; ok {
		return nil, fmt.Errorf("%w: %s (cancel does not free a name: pick another)", ErrExists, job.Name)
	}
	r := &record{Job: *job}
	setPending(r, now, "Submitted", "waiting to be placed")
	if err := e.save(r); err != nil {
		return nil, err
	}
	e.jobs[job.Name] = r
	e.log.Info("job submitted", "job", job.Name, "workers", job.Spec.Workers, "gpus_per_worker", job.Spec.GPUsPerWorker)
	e.poke()
	return r.Job.DeepCopy(), nil
}

// List returns every job, oldest first.
func (e *Executor) List() []v1alpha1.TrainingJob {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]v1alpha1.TrainingJob, 0, len(e.jobs))
	for _, r := range e.jobs {
		out = append(out, *r.Job.DeepCopy())
	}
	slices.SortFunc(out, func(a, b v1alpha1.TrainingJob) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Get returns one job.
func (e *Executor) Get(name string) (*v1alpha1.TrainingJob, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.jobs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return r.Job.DeepCopy(), nil
}

// Cancel stops a job: its ranks get SIGTERM (they checkpoint and exit)
// and it ends Failed with reason Cancelled. Its record and logs stay.
func (e *Executor) Cancel(_ context.Context, name string) (*v1alpha1.TrainingJob, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.jobs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if r.Job.Status.Phase.Terminal() {
		return nil, fmt.Errorf("%w: %s is %s", ErrFinished, name, r.Job.Status.Phase)
	}
	e.log.Info("job cancelled", "job", name)
	if r.gang != nil {
		e.stopGang(r, stopCancel, "cancelled")
		r.Job.Status.Conditions = setCond(r.Job.Status.Conditions, r.Job.Generation, time.Now(), v1alpha1.ConditionRunning, metav1.ConditionFalse, ReasonCancelled, "cancelled: ranks are checkpointing and exiting")
		e.saveLogged(r)
	} else {
		e.finish(r, time.Now(), v1alpha1.PhaseFailed, ReasonCancelled, "cancelled before it ran")
		e.saveLogged(r)
		e.notifyFinish(r)
	}
	return r.Job.DeepCopy(), nil
}

// Run schedules and supervises jobs until ctx ends; then it stops every
// gang (SIGTERM: the ranks checkpoint and exit 0 within the grace period,
// or are killed), records them as waiting for the next start, and
// returns.
func (e *Executor) Run(ctx context.Context) error {
	if !e.running.TryLock() {
		return errors.New("local executor: already running")
	}
	defer e.running.Unlock()
	e.mu.Lock()
	e.baseCtx = context.WithoutCancel(ctx)
	e.mu.Unlock()
	tick := time.NewTicker(e.interval)
	defer tick.Stop()
	lastProgress := time.Time{}
	for {
		e.pass(ctx)
		if time.Since(lastProgress) >= e.progressEvery {
			e.progress(ctx)
			lastProgress = time.Now()
		}
		select {
		case <-ctx.Done():
			e.shutdown()
			return nil
		case <-tick.C:
		case <-e.wake:
		}
	}
}

// shutdown stops every gang and waits for the processes.
func (e *Executor) shutdown() {
	e.mu.Lock()
	e.closing = true
	for _, r := range e.jobs {
		if r.gang != nil && r.Stopping == "" {
			e.stopGang(r, stopShutdown, "the executor is stopping")
		}
	}
	e.mu.Unlock()
	e.exits.Wait()
	e.progress(context.Background())
}

// pass runs the scheduling core once and carries out its plan.
func (e *Executor) pass(ctx context.Context) {
	nodes, err := e.nodes(ctx)
	if err != nil {
		e.log.Warn("reading the machine's GPUs", "err", err)
		return
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return
	}
	snap := core.Snapshot{Now: now, Nodes: nodes, Queues: e.queues}
	for _, r := range e.jobs {
		st := &r.Job.Status
		if st.Phase == v1alpha1.PhaseRestarting && st.NextRestartAt != nil && !now.Before(st.NextRestartAt.Time) {
			setPending(r, now, "BackoffOver", fmt.Sprintf("restart %d: waiting to be placed from %s", st.Restarts, checkpointName(st)))
			e.saveLogged(r)
		}
		switch {
		case r.gang != nil:
			rj := core.RunningJob{Job: CoreJob(&r.Job), Bindings: r.gang.bindings, Started: r.gang.started, Terminating: r.Stopping != ""}
			if c := st.LatestCheckpoint; c != nil {
				rj.LastCheckpoint = c.Time.Time
			}
			snap.Running = append(snap.Running, rj)
		case st.Phase == v1alpha1.PhasePending || st.Phase == v1alpha1.PhasePreempted:
			snap.Pending = append(snap.Pending, CoreJob(&r.Job))
		}
	}
	if len(snap.Pending) == 0 {
		return
	}
	plan, err := core.Schedule(&snap, core.Config{Scorer: e.scorer, Preempt: true, GracePeriod: e.grace})
	if err != nil {
		e.log.Error("scheduling core", "err", err)
		return
	}
	for _, p := range plan.Preemptions {
		v := e.jobs[p.Victim]
		if v == nil || v.gang == nil || v.Stopping != "" {
			continue
		}
		msg := fmt.Sprintf("preempted for %s; work since the last checkpoint: %v", p.For, p.LostWork.Round(time.Second))
		e.log.Info("preempting", "job", p.Victim, "for", p.For, "lost_work", p.LostWork)
		v.Job.Status.Evictions++
		v.Job.Status.PreemptedBy = p.For
		v.Why = msg
		e.stopGang(v, stopPreempt, msg)
		e.saveLogged(v)
	}
	byJob := map[string][]core.Binding{}
	for _, b := range plan.Bindings {
		byJob[b.Job] = append(byJob[b.Job], b)
	}
	for name, bs := range byJob {
		if r := e.jobs[name]; r != nil {
			e.startGang(r, bs, now)
		}
	}
	for _, p := range plan.Pending {
		r := e.jobs[p.Job]
		if r == nil || r.gang != nil {
			continue
		}
		c := meta.FindStatusCondition(r.Job.Status.Conditions, v1alpha1.ConditionAdmitted)
		if c == nil || c.Message != p.Reason {
			r.Job.Status.Conditions = setCond(r.Job.Status.Conditions, r.Job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Unschedulable", p.Reason)
			e.saveLogged(r)
		}
	}
}

func checkpointName(st *v1alpha1.TrainingJobStatus) string {
	if c := st.LatestCheckpoint; c != nil && c.Path != "" {
		return fmt.Sprintf("checkpoint %s (step %d)", c.Path, c.Step)
	}
	return "the start (no checkpoint yet)"
}

// startGang starts every rank of a placement; when one cannot start, the
// others are killed and the gang counts as failed. Called with e.mu held.
func (e *Executor) startGang(r *record, bs []core.Binding, now time.Time) {
	j := &r.Job
	st := &j.Status
	slices.SortFunc(bs, func(a, b core.Binding) int { return cmp.Compare(a.Worker, b.Worker) })
	gen := st.GangGeneration + 1
	g := &gang{gen: gen, bindings: bs, started: now}
	r.gang, r.Stopping, r.Why = g, "", ""
	st.GangGeneration = gen
	st.Phase = v1alpha1.PhaseRunning
	st.AdmittedAt, st.StartedAt = ptrTime(now), ptrTime(now)
	st.NextRestartAt, st.PreemptedBy = nil, ""
	st.Placement = nil
	st.ObservedGeneration = j.Generation
	resume := ""
	if c := st.LatestCheckpoint; c != nil {
		resume = c.Path
	}
	rdv, err := freeLoopbackAddr()
	var startErr error
	if err != nil {
		startErr = err
	}
	for _, b := range bs {
		if startErr != nil {
			break
		}
		w := Worker{Rank: b.Worker, Rendezvous: rdv, Generation: gen, ResumeFrom: resume}
		for _, s := range b.GPUs {
			w.GPUs = append(w.GPUs, s.Index)
			w.GPUMilli = s.Milli
		}
		pl := v1alpha1.WorkerPlacement{Rank: int32(b.Worker), Pod: fmt.Sprintf("%s-%d-%d", j.Name, gen, b.Worker), Node: b.Node, GPUMilli: int32(w.GPUMilli)}
		for _, x := range w.GPUs {
			pl.GPUs = append(pl.GPUs, int32(x))
		}
		st.Placement = append(st.Placement, pl)
		p, err := e.startRank(r, g, w)
		if err != nil {
			startErr = fmt.Errorf("rank %d: %w", b.Worker, err)
			break
		}
		g.procs = append(g.procs, p)
		g.live++
		r.Procs = append(r.Procs, procRecord{Rank: w.Rank, PID: p.cmd.Process.Pid, Cmdline: strings.Join(p.cmd.Args, " ")})
	}
	st.Conditions = setCond(st.Conditions, j.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionTrue, "Placed", placementSummary(st.Placement))
	st.Conditions = setCond(st.Conditions, j.Generation, now, v1alpha1.ConditionRunning, metav1.ConditionTrue, "Started", fmt.Sprintf("gang generation %d of %d ranks started from %s", gen, len(bs), checkpointName(st)))
	meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionPreempted)
	e.log.Info("gang started", "job", j.Name, "generation", gen, "ranks", len(bs), "from", checkpointName(st))
	if startErr != nil {
		e.log.Error("gang could not start", "job", j.Name, "err", startErr)
		if g.live == 0 {
			r.gang = nil
			r.Procs = nil
			e.failGang(r, now, "gang could not start: "+startErr.Error())
		} else {
			r.Why = "gang could not start: " + startErr.Error()
			r.Stopping = stopFailure
			e.killGang(j.Name, g)
		}
	}
	e.saveLogged(r)
}

func placementSummary(pl []v1alpha1.WorkerPlacement) string {
	parts := make([]string, len(pl))
	for i, p := range pl {
		parts[i] = fmt.Sprintf("rank %d on %s gpus %v", p.Rank, p.Node, p.GPUs)
	}
	return strings.Join(parts, "; ")
}

// startRank starts one rank with its output appended to its log file.
func (e *Executor) startRank(r *record, g *gang, w Worker) (*proc, error) {
	j := &r.Job
	env, err := WorkerEnv(e.base, j, w)
	if err != nil {
		return nil, err
	}
	argv := Argv(e.self, &j.Spec.Template)
	logPath := e.LogPath(j.Name, w.Rank)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	workDir := filepath.Join(e.dir, "work", j.Name, fmt.Sprintf("rank-%d", w.Rank))
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		lf.Close()
		return nil, err
	}
	from := w.ResumeFrom
	if from == "" {
		from = "-"
	}
	fmt.Fprintf(lf, "--- babelfish local executor: %s generation %d rank %d of %d started %s, resume from %s\n",
		j.Name, w.Generation, w.Rank, j.Spec.Workers, time.Now().UTC().Format(time.RFC3339), from)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so a stop reaches whatever the rank started;
	// killed with the executor if that dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(lf, "--- babelfish local executor: start failed: %v\n", err)
		lf.Close()
		return nil, err
	}
	p := &proc{rank: w.Rank, cmd: cmd}
	e.exits.Add(1)
	go func() {
		defer e.exits.Done()
		err := cmd.Wait()
		fmt.Fprintf(lf, "--- babelfish local executor: rank %d generation %d exited: %s\n", w.Rank, w.Generation, exitString(err))
		lf.Close()
		e.onExit(j.Name, g, p, err)
	}()
	return p, nil
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stopGang signals every live rank to stop (SIGTERM: checkpoint and exit)
// and kills what is left after the grace period. Called with e.mu held.
func (e *Executor) stopGang(r *record, why, msg string) {
	g := r.gang
	if g == nil {
		return
	}
	if r.Stopping == "" || why == stopCancel || why == stopShutdown {
		r.Stopping = why
	}
	if msg != "" && r.Why == "" {
		r.Why = msg
	}
	for _, p := range g.procs {
		if !p.exited {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	if g.kill == nil {
		g.kill = time.AfterFunc(e.grace, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.log.Warn("grace period over: killing what is left of the gang", "job", r.Job.Name, "grace", e.grace)
			e.killGang(r.Job.Name, g)
		})
	}
}

// killGang kills every live rank of g at once. Called with e.mu held, or
// from a timer that takes it.
func (e *Executor) killGang(name string, g *gang) {
	for _, p := range g.procs {
		if !p.exited {
			e.log.Debug("killing rank", "job", name, "rank", p.rank)
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

// onExit records a rank's exit and settles the gang when it was the last.
func (e *Executor) onExit(name string, g *gang, p *proc, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.jobs[name]
	p.exited, p.err = true, err
	g.live--
	if r == nil || r.gang != g {
		return
	}
	// A rank whose group is gone may have left children: make sure.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	r.Procs = slices.DeleteFunc(r.Procs, func(pr procRecord) bool { return pr.PID == p.cmd.Process.Pid })
	e.log.Info("rank exited", "job", name, "generation", g.gen, "rank", p.rank, "status", exitString(err))
	if r.Stopping == "" {
		switch {
		case err == nil && p.rank == 0:
			// The others finish on their own; kill them only if they
			// linger past the grace period.
			r.Stopping = stopDone
			if g.live > 0 && g.kill == nil {
				g.kill = time.AfterFunc(e.grace, func() {
					e.mu.Lock()
					defer e.mu.Unlock()
					e.killGang(r.Job.Name, g)
				})
			}
		case err != nil:
			// The gang is broken: the survivors cannot agree on a step
			// any more, so they are killed rather than asked to
			// checkpoint; the restart resumes from the last committed
			// checkpoint, losing at most one interval.
			r.Stopping = stopFailure
			r.Why = fmt.Sprintf("rank %d %s", p.rank, exitString(err))
			e.log.Warn("rank failed: tearing the gang down", "job", name, "rank", p.rank, "err", err)
			e.killGang(name, g)
		}
	}
	if g.live > 0 {
		e.saveLogged(r)
		return
	}
	if g.kill != nil {
		g.kill.Stop()
	}
	rank0 := g.procs[0]
	if r.Stopping == stopDone && rank0.err == nil && e.ckpts != nil {
		// Rank 0 also exits 0 on a SIGTERM from outside after
		// checkpointing: only a checkpoint at the last step is success.
		go e.settleDone(r, g)
		return
	}
	e.settle(r, g, nil)
}

// settleDone reads the final checkpoint, then settles the gang.
func (e *Executor) settleDone(r *record, g *gang) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := e.ckpts.Latest(ctx, r.Job.Name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.gang != g {
		return
	}
	if err != nil {
		e.log.Warn("reading the final checkpoint", "job", r.Job.Name, "err", err)
	}
	e.settle(r, g, info)
}

// settle moves a job on once its whole gang has exited. Called with e.mu
// held.
func (e *Executor) settle(r *record, g *gang, final *CheckpointInfo) {
	now := time.Now()
	st := &r.Job.Status
	r.gang, r.Procs = nil, nil
	st.Placement = nil
	if final != nil {
		applyCheckpoint(st, final)
	}
	why := r.Why
	stopping := r.Stopping
	r.Stopping = ""
	switch stopping {
	case stopDone:
		if final != nil && !final.Final {
			e.failGang(r, now, fmt.Sprintf("rank 0 exited 0 at step %d, before the end of training (stopped from outside)", final.Step))
			break
		}
		e.finish(r, now, v1alpha1.PhaseSucceeded, "Completed", fmt.Sprintf("rank 0 exited 0 at step %d", st.Step))
		e.notifyFinish(r)
	case stopCancel:
		e.finish(r, now, v1alpha1.PhaseFailed, ReasonCancelled, "cancelled; last "+checkpointName(st))
		e.notifyFinish(r)
	case stopPreempt:
		st.Phase = v1alpha1.PhasePreempted
		st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionPreempted, metav1.ConditionTrue, "Preempted", why)
		st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, "Preempted", why)
		st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Preempted", "waiting to be placed again")
	case stopShutdown:
		setPending(r, now, ReasonStopped, "the executor stopped; the gang is placed again from "+checkpointName(st)+" when it starts")
	default: // stopFailure, or an exit the executor did not ask for
		// Every rank's end: the first to exit is often a survivor that saw
		// the group break, not the one that died.
		var ends []string
		for _, p := range g.procs {
			ends = append(ends, fmt.Sprintf("rank %d %s", p.rank, exitString(p.err)))
		}
		if why == "" {
			why = "the gang exited without rank 0 finishing"
		}
		if len(ends) > 1 && !strings.HasPrefix(why, "gang could not start") {
			why = strings.Join(ends, "; ")
		}
		e.failGang(r, now, why)
	}
	r.Why = ""
	e.saveLogged(r)
	e.poke()
}

// failGang counts a gang failure: Restarting after a backoff, or Failed
// past the backoff limit, as the controller does. Called with e.mu held.
func (e *Executor) failGang(r *record, now time.Time, why string) {
	st := &r.Job.Status
	st.Placement = nil
	limit := int32(DefaultBackoffLimit)
	if bl := r.Job.Spec.BackoffLimit; bl != nil {
		limit = *bl
	}
	if st.Restarts >= limit {
		e.finish(r, now, v1alpha1.PhaseFailed, "BackoffLimitExceeded", fmt.Sprintf("%s; backoff limit %d reached after %d restarts", why, limit, st.Restarts))
		e.notifyFinish(r)
		return
	}
	st.Restarts++
	wait := Backoff(st.Restarts, e.backoffBase, e.backoffMax)
	st.Phase = v1alpha1.PhaseRestarting
	st.NextRestartAt = ptrTime(now.Add(wait))
	msg := fmt.Sprintf("%s; restart %d of %d in %v from %s", why, st.Restarts, limit, wait, checkpointName(st))
	e.log.Warn("gang failed: restarting", "job", r.Job.Name, "why", why, "restart", st.Restarts, "backoff", wait)
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, "RankFailed", msg)
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, "Backoff", msg)
}

// finish ends a job. Called with e.mu held.
func (e *Executor) finish(r *record, now time.Time, phase v1alpha1.TrainingJobPhase, reason, msg string) {
	st := &r.Job.Status
	st.Phase = phase
	st.CompletedAt = ptrTime(now)
	st.Placement, st.NextRestartAt = nil, nil
	typ := v1alpha1.ConditionSucceeded
	if phase == v1alpha1.PhaseFailed {
		typ = v1alpha1.ConditionFailed
	}
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, typ, metav1.ConditionTrue, reason, msg)
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionRunning, metav1.ConditionFalse, reason, msg)
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg)
	e.log.Info("job finished", "job", r.Job.Name, "phase", phase, "reason", reason, "message", msg)
}

func (e *Executor) notifyFinish(r *record) {
	if e.onFinish == nil {
		return
	}
	j := *r.Job.DeepCopy()
	ctx := e.baseCtx
	go e.onFinish(ctx, j)
}

func setPending(r *record, now time.Time, reason, msg string) {
	st := &r.Job.Status
	st.Phase = v1alpha1.PhasePending
	st.NextRestartAt = nil
	st.Conditions = setCond(st.Conditions, r.Job.Generation, now, v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg)
}

func setCond(cs []metav1.Condition, gen int64, now time.Time, typ string, status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	meta.SetStatusCondition(&cs, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now)})
	return cs
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

func applyCheckpoint(st *v1alpha1.TrainingJobStatus, c *CheckpointInfo) {
	if c == nil {
		return
	}
	st.Step = c.Step
	loss := c.Loss
	st.Loss = &loss
	if len(c.Eval) > 0 {
		st.EvalMetrics = c.Eval
	}
	st.LatestCheckpoint = &v1alpha1.CheckpointRef{Step: c.Step, Path: c.Path, Time: metav1.NewTime(c.Time)}
}

// progress reads the newest checkpoint of every job that has run and is
// not finished (a gang that just stopped may have written one last).
func (e *Executor) progress(ctx context.Context) {
	if e.ckpts == nil {
		return
	}
	e.mu.Lock()
	var names []string
	for name, r := range e.jobs {
		if r.gang != nil || (!r.Job.Status.Phase.Terminal() && r.Job.Status.GangGeneration > 0) {
			names = append(names, name)
		}
	}
	e.mu.Unlock()
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := e.ckpts.Latest(cctx, name)
		cancel()
		if err != nil {
			e.log.Debug("reading the latest checkpoint", "job", name, "err", err)
			continue
		}
		if info == nil {
			continue
		}
		e.mu.Lock()
		if r := e.jobs[name]; r != nil {
			if c := r.Job.Status.LatestCheckpoint; c == nil || c.Path != info.Path {
				applyCheckpoint(&r.Job.Status, info)
				e.saveLogged(r)
			}
		}
		e.mu.Unlock()
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("a free loopback port for the rendezvous: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
