package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/internal/testenv"
	"babelfish.dev/babelfish/objstore"
	"babelfish.dev/babelfish/scheduler/local"
)

// suite is the one `babelfish up` every test of the package shares (tests
// run one after another), on a MinIO the suite owns so that a test can
// take the object store away.
type suite struct {
	bin   string
	minio *testenv.MinIO
	up    *upProc
	store *objstore.Client
	// dataset is the corpus every job trains on.
	dataset string
}

// the suite, set up once by TestMain.
var s *suite

func TestMain(m *testing.M) {
	code, err := runSuite(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runSuite(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "babelfish-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	s = &suite{dataset: "e2e"}
	start := time.Now()
	// The binary is built without -race: the ranks train for real, and the
	// race detector would make that several times slower.
	if s.bin = os.Getenv("BABELFISH_E2E_BIN"); s.bin == "" {
		s.bin = filepath.Join(tmp, "babelfish")
		build := exec.CommandContext(ctx, "go", "build", "-o", s.bin, "babelfish.dev/babelfish/cmd/babelfish")
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build: %w\n%s", err, out)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: binary ready in %v\n", time.Since(start).Round(time.Millisecond))

	if s.minio, err = testenv.StartMinIO(ctx); err != nil {
		return 0, err
	}
	defer s.minio.Stop()
	cfg := objstore.DefaultConfig()
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Bucket = s.minio.Endpoint, s.minio.AccessKey, s.minio.SecretKey, "e2e"
	if s.store, err = objstore.New(ctx, cfg); err != nil {
		return 0, err
	}

	if s.up, err = startUp(ctx, filepath.Join(tmp, "state")); err != nil {
		return 0, err
	}
	defer func() {
		if err := s.up.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping up:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "e2e: up ready at %s in %v\n", s.up.api, time.Since(start).Round(time.Millisecond))

	// A small corpus: 3 languages, numbers 0..9, two training voices and a
	// held-out one; number 7 is held out as an unseen phrase.
	out, err := s.up.babelfish(ctx, "dataset", "build", "--name", s.dataset, "--version", "v1",
		"--languages", "de,en,fr", "--categories", "num", "--number-max", "9",
		"--variants", "m1,f1,m7", "--unseen-voices", "m7", "--unseen-phrases", "num:7",
		"--speeds", "170", "--pitches", "50", "--shard-size", "1")
	if err != nil {
		return 0, fmt.Errorf("dataset build: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "e2e: dataset ready in %v\n", time.Since(start).Round(time.Millisecond))
	return m.Run(), nil
}

// upProc is a running `babelfish up`.
type upProc struct {
	bin     string
	dir     string
	cmd     *exec.Cmd
	done    chan struct{}
	out     *syncBuffer
	env     []string // BABELFISH_SERVER and BABELFISH_S3_*, from up's env file
	api     string
	serving string // the Translator's gRPC address
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startUp runs `babelfish up` on the suite's MinIO with a state dir, and
// waits until it has written where it listens.
func startUp(ctx context.Context, dir string) (*upProc, error) {
	u := &upProc{bin: s.bin, dir: dir, done: make(chan struct{}), out: &syncBuffer{}}
	cmd := exec.Command(s.bin, "up", "--fake-gpus=dgxa100", "--state-dir", dir, "--listen", "127.0.0.1:0",
		"--serve-listen", "127.0.0.1:0", "--model", "e2e",
		"--backoff-base", "1s", "--backoff-max", "4s", "--grace-period", "60s", "--log-level", "debug")
	cmd.Env = append(os.Environ(),
		"BABELFISH_S3_ENDPOINT="+s.minio.Endpoint, "BABELFISH_S3_ACCESS_KEY="+s.minio.AccessKey,
		"BABELFISH_S3_SECRET_KEY="+s.minio.SecretKey, "BABELFISH_S3_BUCKET=e2e",
		// Ranks retry the store for up to about 20 s, longer than the
		// outage the fault test makes.
		"BABELFISH_S3_MAX_RETRIES=8")
	cmd.Stdout, cmd.Stderr = u.out, u.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	u.cmd = cmd
	go func() { _ = cmd.Wait(); close(u.done) }()
	deadline := time.After(2 * time.Minute)
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "up.json"))
		if err == nil {
			var st struct {
				PID     int    `json:"pid"`
				API     string `json:"api"`
				Serving string `json:"serving"`
			}
			if json.Unmarshal(raw, &st) == nil && st.PID == cmd.Process.Pid {
				u.api, u.serving = st.API, st.Serving
				break
			}
		}
		select {
		case <-u.done:
			return nil, fmt.Errorf("babelfish up exited:\n%s", u.out.String())
		case <-deadline:
			_ = u.stop()
			return nil, fmt.Errorf("babelfish up not ready in 2m:\n%s", u.out.String())
		case <-ctx.Done():
			_ = u.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	env, err := readEnvFile(filepath.Join(dir, "env"))
	if err != nil {
		_ = u.stop()
		return nil, err
	}
	u.env = env
	return u, nil
}

// readEnvFile reads up's "export K='v'" lines.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env = append(env, k+"="+strings.ReplaceAll(strings.Trim(v, "'"), `'\''`, "'"))
	}
	return env, sc.Err()
}

// stop sends SIGTERM (running jobs checkpoint) and waits for up to exit.
func (u *upProc) stop() error {
	select {
	case <-u.done:
		return nil
	default:
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
		return nil
	case <-time.After(2 * time.Minute):
		_ = u.cmd.Process.Kill()
		<-u.done
		return errors.New("babelfish up did not stop within 2m of SIGTERM: killed")
	}
}

// babelfish runs the CLI with up's environment.
func (u *upProc) babelfish(ctx context.Context, args ...string) (string, error) {
	return u.babelfishIn(ctx, nil, args...)
}

func (u *upProc) babelfishIn(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, u.bin, args...)
	cmd.Env = append(os.Environ(), u.env...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (u *upProc) client(t *testing.T) *local.Client {
	t.Helper()
	c, err := local.NewClient(u.api, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// jobSpec is a 2-rank job of the tiny model on the suite's corpus.
type jobSpec struct {
	name            string
	steps           int64
	checkpointEvery int64
	backoffLimit    int
	promotion       string // "" or a YAML promotion block
	model           string // default e2e
}

func (j jobSpec) yaml() string {
	return fmt.Sprintf(`apiVersion: babelfish.dev/v1alpha1
kind: TrainingJob
metadata:
  name: %s
spec:
  dataset: {name: %s, version: v1}
  model:
    name: %s
    languages: [de, en, fr]
    steps: %d
    batchSize: 8
    learningRate: 0.003
    parameters:
      segments: 4
      enc: [32]
      context: 16
      dec: 24
      units: 12
      checkpoint-every: %d
      block-shards: 1
      log-every: 50
  workers: 2
  gpusPerWorker: 1
  backoffLimit: %d
%s  template:
    image: babelfish:e2e
`, j.name, s.dataset, cmp.Or(j.model, "e2e"), j.steps, j.checkpointEvery, j.backoffLimit, j.promotion)
}

// submit sends a job through `babelfish submit -f -`.
func submit(t *testing.T, j jobSpec) {
	t.Helper()
	out, err := s.up.babelfishIn(context.Background(), strings.NewReader(j.yaml()), "submit", "-f", "-")
	if err != nil {
		t.Fatalf("submit %s: %v\n%s", j.name, err, out)
	}
}

// waitJob polls a job until ok holds, failing on a terminal phase ok does
// not accept.
func waitJob(t *testing.T, name string, timeout time.Duration, what string, ok func(*v1alpha1.TrainingJob) bool) *v1alpha1.TrainingJob {
	t.Helper()
	c := s.up.client(t)
	deadline := time.Now().Add(timeout)
	for {
		j, err := c.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if j.Status.Phase.Terminal() || time.Now().After(deadline) {
			logs, _ := s.up.babelfish(context.Background(), "logs", name, "--rank", "0")
			t.Fatalf("job %s: %s did not happen (phase %s, step %d, restarts %d)\nstatus: %+v\nrank 0 log:\n%s",
				name, what, j.Status.Phase, j.Status.Step, j.Status.Restarts, j.Status, tail(logs, 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func succeeded(j *v1alpha1.TrainingJob) bool { return j.Status.Phase == v1alpha1.PhaseSucceeded }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
