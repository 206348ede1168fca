package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/minio"
	"babelfish.dev/babelfish/nvml"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/core"
	"babelfish.dev/babelfish/scheduler/local"
	"babelfish.dev/babelfish/serving"
	"babelfish.dev/babelfish/trainer"
)

// envTranslator is the Translator address `up` serves, for translate.
const envTranslator = "BABELFISH_TRANSLATOR"

// Files of `up`'s state directory.
const (
	upStateFile = "up.json" // where each part listens, while up runs
	upEnvFile   = "env"     // export lines for other shells
	upLockFile  = "up.lock" // one up per state directory
	upMinIOFile = "minio.json"
)

// upState is what `up` records for the other commands while it runs.
type upState struct {
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	StateDir  string    `json:"state_dir"`
	API       string    `json:"api"`
	Dashboard string    `json:"dashboard"`
	S3        string    `json:"s3_endpoint"`
	Bucket    string    `json:"s3_bucket"`
	OwnMinIO  bool      `json:"own_minio"`
	GPUAgent  string    `json:"gpu_agent"`
	GPUs      string    `json:"gpus"`
	Serving   string    `json:"serving"`
	Model     string    `json:"model"`
}

// readUpState reads the state of a running `up`.
func readUpState(dir string) (*upState, error) {
	raw, err := os.ReadFile(filepath.Join(dir, upStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("`babelfish up` is not running with state dir %s", dir)
	}
	if err != nil {
		return nil, err
	}
	var st upState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, upStateFile), err)
	}
	if st.PID > 0 && syscall.Kill(st.PID, 0) != nil {
		return nil, fmt.Errorf("`babelfish up` (pid %d) recorded in %s is not running any more", st.PID, dir)
	}
	return &st, nil
}

type upOptions struct {
	stateDir    string
	listen      string
	fake        string
	agentListen string
	minioAddr   string
	model       string
	serveListen string
	grace       time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration
}

func newUpCmd() *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up [--fake-gpus dgxa100|dgxh100]",
		Short: "Run the whole system on this machine (storage, scheduler, GPUs, serving)",
		Long: `Run Babelfish on this one machine, in one process tree:

  object storage  MinIO from the tools cache (data in the state dir), or the
                  store named by --s3-endpoint / BABELFISH_S3_ENDPOINT
  scheduler       the same scheduling core as the Kubernetes controller,
                  running each TrainingJob's ranks as local ` + "`babelfish trainer`" + `
                  processes: gang start, restart from the last checkpoint
                  with backoff, preemption, cancel, logs per rank
  GPU agent       NVML on this machine's GPUs; without an NVIDIA driver it
                  needs --fake-gpus (go-nvml's simulated DGX): never a
                  silent fallback
  serving         the Translator gRPC API, following the current release of
                  --model (it answers once a release is promoted)
  job API and     submit/jobs/logs/cancel talk to it; the dashboard page is
  dashboard       at its root; /metrics has the serving tier's metrics

It prints where each part listens, writes them to <state-dir>/up.json for
the other commands, and <state-dir>/env with export lines (BABELFISH_SERVER,
BABELFISH_S3_*) for other shells. Ctrl-C (or SIGTERM) stops everything:
running jobs checkpoint and are placed again, resuming, by the next ` + "`up`" + `
on the same state dir; job records, logs and objects survive.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.stateDir, "state-dir", "", "where MinIO's data, job records and logs live (default $"+envStateDir+", else $XDG_STATE_HOME/babelfish or ~/.local/state/babelfish)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the job API and dashboard (port 0 picks one)")
	f.StringVar(&o.fake, "fake-gpus", "", fmt.Sprintf("simulate a machine's GPUs instead of NVML: one of %v", nvml.FakeKinds()))
	f.StringVar(&o.agentListen, "gpu-agent-listen", "127.0.0.1:0", "address of the GPU agent's /metrics, /healthz and /inventory")
	f.StringVar(&o.minioAddr, "minio-address", "", "address of the MinIO `up` starts (default: the one it used last, else a free loopback port)")
	f.StringVar(&o.model, "model", "babelfish", "model served, whose releases the dashboard shows, and that Auto promotion writes when a job names none")
	f.StringVar(&o.serveListen, "serve-listen", "127.0.0.1:8443", "address of the Translator gRPC API, where `babelfish translate` looks by default (port 0 picks one)")
	f.DurationVar(&o.grace, "grace-period", local.DefaultGracePeriod, "how long a stopped rank has to checkpoint before it is killed")
	f.DurationVar(&o.backoffBase, "backoff-base", local.DefaultBackoffBase, "first wait before a failed gang is placed again (doubles per restart)")
	f.DurationVar(&o.backoffMax, "backoff-max", local.DefaultBackoffMax, "longest wait before a failed gang is placed again")
	store := addStoreFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runUp(cmd.Context(), cmd.OutOrStdout(), o, store)
	}
	return cmd
}

// minioState is what `up` keeps to restart its MinIO the same way.
type minioState struct {
	Address   string `json:"address"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

func runUp(ctx context.Context, out io.Writer, o *upOptions, sf *storeFlags) (err error) {
	log := slog.Default()
	if o.fake != "" && !isFakeKind(o.fake) {
		return fmt.Errorf("--fake-gpus %q: want one of %v", o.fake, nvml.FakeKinds())
	}
	if sf.envErr != nil {
		return sf.envErr
	}
	dir := o.stateDir
	if dir == "" {
		if dir, err = defaultStateDir(); err != nil {
			return err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--state-dir %s: %w", dir, err)
	}
	unlock, err := lockStateDir(dir)
	if err != nil {
		return err
	}
	defer unlock()

	// 1. The GPU agent, first: without a GPU, or --fake-gpus, nothing
	// else starts. Real NVML, or the simulated machine asked for.
	var lib gonvml.Interface
	gpuWhat := "NVML"
	if o.fake != "" {
		fake, err := nvml.NewFake(o.fake)
		if err != nil {
			return fmt.Errorf("--fake-gpus: %w", err)
		}
		lib = fake.Interface()
		gpuWhat = "simulated " + o.fake
	} else {
		lib = gonvml.New()
	}
	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgent()
	agent, err := nvml.New(agentCtx, nvml.Config{NVML: lib, Hostname: local.LocalNode, NodeName: local.LocalNode, Logger: log})
	if errors.Is(err, nvml.ErrNoNVML) || errors.Is(err, nvml.ErrNoGPUs) {
		return fmt.Errorf("%w\nno usable GPU on this machine; to run on a simulated one pass --fake-gpus=dgxa100 or --fake-gpus=dgxh100", err)
	}
	if err != nil {
		return err
	}
	defer agent.Close()
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		if err := agent.Run(agentCtx); err != nil {
			log.Error("gpu agent stopped", "err", err)
		}
	}()
	defer func() { stopAgent(); <-agentDone }()
	agentHandler, err := agent.Handler()
	if err != nil {
		return err
	}
	agentLn, err := net.Listen("tcp", o.agentListen)
	if err != nil {
		return fmt.Errorf("--gpu-agent-listen %s: %w", o.agentListen, err)
	}
	agentSrv := &http.Server{Handler: agentHandler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = agentSrv.Serve(agentLn) }()
	defer agentSrv.Close()
	inv := agent.Inventory()
	gpuDesc := fmt.Sprintf("%d x %s (%s)", len(inv.GPUs), inv.Model(), gpuWhat)

	// 2. Object storage.
	cfg := sf.cfg
	ms, err := loadMinIOState(dir)
	if err != nil {
		return err
	}
	var srv *minio.Server
	// An endpoint equal to our own MinIO's (a shell that sourced env) is
	// ours to start, not an external store.
	if cfg.Endpoint == "" || (ms != nil && cfg.Endpoint == ms.Address && !cfg.TLS) {
		if srv, err = startOwnMinIO(ctx, dir, o.minioAddr, ms, log); err != nil {
			return err
		}
		defer func() {
			if serr := srv.Shutdown(); serr != nil && err == nil {
				err = serr
			}
			log.Info("minio stopped")
		}()
		cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.CredentialsFile, cfg.TLS = srv.Endpoint, srv.AccessKey, srv.SecretKey, "", false
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg, objstore.WithLogger(log))
	if err != nil {
		return err
	}
	if err := store.EnsureBucket(ctx); err != nil {
		return err
	}

	// 3. The local executor.
	exec, err := local.New(filepath.Join(dir, "executor"),
		local.WithLogger(log),
		local.WithBaseEnv(workerBaseEnv(os.Environ(), cfg)),
		local.WithNodes(agentNodes(agent)),
		local.WithCheckpoints(storeCheckpoints{store}),
		local.WithGracePeriod(o.grace),
		local.WithBackoff(o.backoffBase, o.backoffMax),
		local.WithOnFinish(func(ctx context.Context, j v1alpha1.TrainingJob) { autoPromote(ctx, store, o.model, j, log) }),
	)
	if err != nil {
		return err
	}
	execCtx, stopExec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExec()
	execDone := make(chan error, 1)
	go func() { execDone <- exec.Run(execCtx) }()
	defer func() {
		stopExec()
		if eerr := <-execDone; eerr != nil && err == nil {
			err = eerr
		}
		log.Info("executor stopped: running jobs checkpointed and resume on the next up")
	}()

	// 4. Serving: follows the model's current release.
	translator, err := serving.New(store, o.model, serving.WithLogger(log), serving.WithPollInterval(time.Second))
	if err != nil {
		return err
	}
	serveLn, err := net.Listen("tcp", o.serveListen)
	if err != nil {
		return fmt.Errorf("--serve-listen %s: %w (pass --serve-listen 127.0.0.1:0 for any free port)", o.serveListen, err)
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	serveDone := make(chan error, 1)
	go func() { serveDone <- translator.Serve(serveCtx, serveLn) }()
	defer func() {
		stopServe()
		if serr := <-serveDone; serr != nil && err == nil {
			err = fmt.Errorf("serving: %w", serr)
		}
		log.Info("serving stopped")
	}()

	// 5. The job API, health, metrics and the dashboard on one listener.
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", translator.MetricsHandler())
	api := local.Handler(exec)
	mux.Handle("/api/v1/jobs", api)
	mux.Handle("/api/v1/jobs/", api)
	apiLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w (is another `babelfish up` running? pass --listen 127.0.0.1:0 for any free port)", o.listen, err)
	}
	st := upState{
		PID: os.Getpid(), Started: time.Now().UTC(), StateDir: dir,
		API: "http://" + apiLn.Addr().String(), S3: cfg.Endpoint, Bucket: cfg.Bucket, OwnMinIO: srv != nil,
		GPUAgent: "http://" + agentLn.Addr().String(), GPUs: gpuDesc, Serving: serveLn.Addr().String(), Model: o.model,
	}
	st.Dashboard = st.API + "/"
	stats := &servingStats{metrics: translator.MetricsHandler(), release: translator.Release}
	src := &upSource{agent: agent, agentURL: "http://" + agentLn.Addr().String(), exec: exec, store: store, model: o.model, serving: stats.Serving}
	dash, err := newDashboard(src)
	if err != nil {
		apiLn.Close()
		return err
	}
	mux.Handle("/", dash)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upHealth(r.Context(), store, agent, &st))
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	apiSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	apiErr := make(chan error, 1)
	go func() { apiErr <- apiSrv.Serve(apiLn) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = apiSrv.Shutdown(sctx)
	}()

	if err := writeUpFiles(dir, &st, cfg); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(dir, upStateFile))
	printUp(out, &st, srv, dir)

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "babelfish up: stopping (jobs checkpoint first)")
		return nil
	case err := <-apiErr:
		return fmt.Errorf("job API server: %w", err)
	}
}

func isFakeKind(k string) bool {
	for _, x := range nvml.FakeKinds() {
		if x == k {
			return true
		}
	}
	return false
}

// lockStateDir makes sure one `up` at a time uses dir.
func lockStateDir(dir string) (func(), error) {
	p := filepath.Join(dir, upLockFile)
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir lock: %w", err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		raw, _ := os.ReadFile(p)
		fh.Close()
		return nil, fmt.Errorf("state dir %s is in use by another `babelfish up` (pid %s): stop it, or pass another --state-dir", dir, strings.TrimSpace(string(raw)))
	}
	_ = fh.Truncate(0)
	_, _ = fh.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(fh.Fd()), syscall.LOCK_UN)
		fh.Close()
	}, nil
}

func loadMinIOState(dir string) (*minioState, error) {
	raw, err := os.ReadFile(filepath.Join(dir, upMinIOFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ms minioState
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, upMinIOFile), err)
	}
	return &ms, nil
}

// startOwnMinIO starts MinIO on the state dir's data with the credentials
// it had before (new random ones the first time) and, when free, the same
// address, so clients configured from env keep working across restarts.
func startOwnMinIO(ctx context.Context, dir, addr string, ms *minioState, log *slog.Logger) (*minio.Server, error) {
	if ms == nil {
		ms = &minioState{AccessKey: "bf" + randHex(9), SecretKey: randHex(20)}
	}
	opts := []minio.Option{
		minio.WithDataDir(filepath.Join(dir, "minio", "data")),
		minio.WithCredentials(ms.AccessKey, ms.SecretKey),
		minio.WithLogger(log),
	}
	tryAddr := addr
	if tryAddr == "" {
		tryAddr = ms.Address
	}
	var (
		srv *minio.Server
		err error
	)
	if tryAddr != "" {
		srv, err = minio.Start(ctx, append(opts, minio.WithAddress(tryAddr))...)
		if err != nil && addr != "" {
			return nil, fmt.Errorf("--minio-address %s: %w", addr, err)
		}
		if err != nil {
			log.Info("the last MinIO address is taken: using a free port", "address", tryAddr, "err", err)
		}
	}
	if srv == nil {
		if srv, err = minio.Start(ctx, opts...); err != nil {
			return nil, err
		}
	}
	ms.Address = srv.Endpoint
	raw, _ := json.MarshalIndent(ms, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, upMinIOFile), raw, 0o600); err != nil {
		_ = srv.Shutdown()
		return nil, err
	}
	return srv, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// workerBaseEnv is the environment of every rank: this process's, with the
// object store `up` uses in place of any BABELFISH_S3_* it had.
func workerBaseEnv(env []string, cfg objstore.Config) []string {
	out := make([]string, 0, len(env)+8)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "BABELFISH_S3_") {
			out = append(out, kv)
		}
	}
	return append(out, s3Env(cfg)...)
}

// s3Env is cfg as BABELFISH_S3_* variables.
func s3Env(cfg objstore.Config) []string {
	env := []string{
		objstore.EnvEndpoint + "=" + cfg.Endpoint,
		objstore.EnvBucket + "=" + cfg.Bucket,
		objstore.EnvTLS + "=" + strconv.FormatBool(cfg.TLS),
	}
	add := func(name, v string) {
		if v != "" {
			env = append(env, name+"="+v)
		}
	}
	add(objstore.EnvRegion, cfg.Region)
	add(objstore.EnvCAFile, cfg.CAFile)
	add(objstore.EnvAccessKey, cfg.AccessKey)
	add(objstore.EnvSecretKey, cfg.SecretKey)
	add(objstore.EnvCredentialsFile, cfg.CredentialsFile)
	env = append(env,
		objstore.EnvMaxRetries+"="+strconv.Itoa(cfg.MaxRetries),
		objstore.EnvConcurrency+"="+strconv.Itoa(cfg.Concurrency),
		objstore.EnvPartSize+"="+strconv.FormatInt(cfg.PartSize, 10))
	return env
}

// writeUpFiles writes up.json and the env file (0600: it holds the keys).
func writeUpFiles(dir string, st *upState, cfg objstore.Config) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, upStateFile), raw, 0o600); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# written by `babelfish up`; use with: source " + filepath.Join(dir, upEnvFile) + "\n")
	fmt.Fprintf(&b, "export %s=%s\n", envServer, shellQuote(strings.TrimPrefix(st.API, "http://")))
	fmt.Fprintf(&b, "export %s=%s\n", envTranslator, shellQuote(st.Serving))
	for _, kv := range s3Env(cfg) {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
	}
	return writeFileAtomic(filepath.Join(dir, upEnvFile), []byte(b.String()), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printUp(w io.Writer, st *upState, srv *minio.Server, dir string) {
	s3 := st.S3 + " (external)"
	if srv != nil {
		s3 = fmt.Sprintf("%s (MinIO, data in %s)", st.S3, srv.DataDir)
	}
	serving := fmt.Sprintf("%s (gRPC babelfish.v1.Translator), model %s: answers once a release is promoted", st.Serving, st.Model)
	fmt.Fprintf(w, `babelfish up: ready
  job API     %s/api/v1/jobs
  dashboard   %s
  object store %s, bucket %s
  GPU agent   %s/metrics  %s
  serving     %s
  state       %s
From another shell:  source %s   (sets %s, %s and BABELFISH_S3_*)
Ctrl-C stops everything; running jobs checkpoint and resume on the next `+"`babelfish up`"+`.
`, st.API, st.Dashboard, s3, st.Bucket, st.GPUAgent, st.GPUs, serving, dir, filepath.Join(dir, upEnvFile), envServer, envTranslator)
}

// agentNodes is this machine as the core sees it, with the agent's GPUs as
// it last sampled them (an unhealthy GPU is never given to new work).
func agentNodes(a *nvml.Agent) local.NodeSource {
	return func(context.Context) ([]core.NodeInfo, error) {
		inv := a.Inventory()
		gpus := make([]core.GPUInfo, 0, len(inv.GPUs))
		for _, g := range inv.GPUs {
			gpus = append(gpus, core.GPUInfo{Index: g.Index, MemoryMiB: g.MemoryMiB, Healthy: g.Healthy, Island: g.Island})
		}
		return []core.NodeInfo{local.MachineNode(inv.Model(), gpus)}, nil
	}
}

// storeCheckpoints reads a job's newest committed checkpoint with the
// trainer's own reader.
type storeCheckpoints struct{ store *objstore.Client }

func (s storeCheckpoints) Latest(ctx context.Context, job string) (*local.CheckpointInfo, error) {
	prefix, err := trainer.LatestCheckpoint(ctx, s.store, job)
	if errors.Is(err, trainer.ErrNoCheckpoint) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a, err := s.store.OpenArtifact(ctx, prefix)
	if err != nil {
		return nil, err
	}
	raw, err := a.Get(ctx, trainer.PartState)
	if err != nil {
		return nil, err
	}
	var cs trainer.CheckpointState
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("checkpoint %s state: %w", prefix, err)
	}
	// The trainer ends by itself at its last step, or (with a budget) at
	// its planned step count or when the budget is spent.
	final := cs.Step >= cs.Config.Steps || (cs.PlannedSteps > 0 && cs.Step >= cs.PlannedSteps) ||
		(cs.Config.Budget > 0 && cs.BudgetUsed >= cs.Config.Budget-time.Second)
	return &local.CheckpointInfo{Step: cs.Step, Path: prefix, Time: cs.Time, Loss: cs.Loss, Eval: cs.Eval, Final: final}, nil
}

// upHealth says whether each part answers.
func upHealth(ctx context.Context, store *objstore.Client, agent *nvml.Agent, st *upState) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	h := map[string]any{"status": "ok", "api": st.API}
	if err := store.EnsureBucket(ctx); err != nil {
		h["status"], h["object_store"] = "degraded", err.Error()
	} else {
		h["object_store"] = "ok"
	}
	if age := time.Since(agent.LastSample()); age > 5*agent.Interval() {
		h["status"], h["gpu_agent"] = "degraded", fmt.Sprintf("no GPU sample for %v", age.Round(time.Second))
	} else {
		h["gpu_agent"] = "ok"
	}
	return h
}
