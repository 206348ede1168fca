package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The executor's tests run this test binary itself as the ranks (a real
// child process per rank, with the executor's environment): a small
// stand-in for the trainer whose steps are sleeps, so gang restarts,
// preemption and cancel can be checked in seconds. The real trainer runs
// under the executor in the e2e suite.
const (
	envTestWorker = "BABELFISH_LOCAL_TEST_WORKER"
	envCkptDir    = "TEST_CKPT_DIR"
	envStepTime   = "TEST_STEP_TIME"
	envCrash      = "TEST_CRASH" // "rank:step:generation": that rank exits 3 at that step in that generation
	envCkptEvery  = "TEST_CKPT_EVERY"
)

func TestMain(m *testing.M) {
	if os.Getenv(envTestWorker) == "1" {
		os.Exit(testWorker())
	}
	os.Exit(m.Run())
}

// testWorker trains for the job's steps: rank 0 writes a checkpoint file
// (its step) every TEST_CKPT_EVERY steps, at the end and on SIGTERM, and
// every rank resumes from it.
func testWorker() int {
	rank, _ := strconv.Atoi(os.Getenv("BABELFISH_RANK"))
	gen := os.Getenv("BABELFISH_GENERATION")
	job := os.Getenv("BABELFISH_JOB_ID")
	var model struct {
		Steps int64 `json:"steps"`
	}
	if err := json.Unmarshal([]byte(os.Getenv("BABELFISH_MODEL_CONFIG")), &model); err != nil {
		fmt.Println("bad model config:", err)
		return 2
	}
	dir := filepath.Join(os.Getenv(envCkptDir), job)
	world, _ := strconv.Atoi(os.Getenv("BABELFISH_WORLD_SIZE"))
	// A gang starts together, as the trainer's rendezvous makes it.
	ready := filepath.Join(dir, "ready-"+gen)
	_ = os.MkdirAll(ready, 0o755)
	_ = os.WriteFile(filepath.Join(ready, strconv.Itoa(rank)), nil, 0o644)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ents, _ := os.ReadDir(ready); len(ents) >= world {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("rendezvous timed out")
			return 5
		}
	}
	step := readStep(dir)
	every, _ := strconv.ParseInt(os.Getenv(envCkptEvery), 10, 64)
	stepTime, _ := time.ParseDuration(os.Getenv(envStepTime))
	crashRank, crashStep, crashGen := -1, int64(-1), ""
	if c := os.Getenv(envCrash); c != "" {
		parts := strings.Split(c, ":")
		crashRank, _ = strconv.Atoi(parts[0])
		crashStep, _ = strconv.ParseInt(parts[1], 10, 64)
		crashGen = parts[2]
	}
	fmt.Printf("rank %d of %s generation %s resumes at step %d rendezvous %s gpus %q\n",
		rank, os.Getenv("BABELFISH_WORLD_SIZE"), gen, step, os.Getenv("BABELFISH_RENDEZVOUS"), os.Getenv("BABELFISH_GPU_INDICES"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	save := func() {
		if rank == 0 {
			_ = os.MkdirAll(dir, 0o755)
			// What the job's last step is, as a real checkpoint's config says.
			_ = os.WriteFile(filepath.Join(dir, "steps"), []byte(strconv.FormatInt(model.Steps, 10)), 0o644)
			tmp := filepath.Join(dir, "step.tmp")
			_ = os.WriteFile(tmp, []byte(strconv.FormatInt(step, 10)), 0o644)
			_ = os.Rename(tmp, filepath.Join(dir, "step"))
		}
	}
	for step < model.Steps {
		select {
		case <-ctx.Done():
			save()
			fmt.Printf("rank %d: SIGTERM: checkpointed step %d\n", rank, step)
			return 0
		case <-time.After(stepTime):
		}
		step++
		if rank == crashRank && step == crashStep && gen == crashGen {
			fmt.Printf("rank %d: crashing at step %d\n", rank, step)
			return 3
		}
		if every > 0 && step%every == 0 {
			save()
		}
	}
	save()
	fmt.Printf("rank %d: done at step %d\n", rank, step)
	return 0
}

func readStep(dir string) int64 {
	raw, err := os.ReadFile(filepath.Join(dir, "step"))
	if err != nil {
		return 0
	}
	s, _ := strconv.ParseInt(string(raw), 10, 64)
	return s
}

// fileCheckpoints reads the test workers' checkpoints.
type fileCheckpoints struct{ dir string }

func (f fileCheckpoints) Latest(_ context.Context, job string) (*CheckpointInfo, error) {
	d := filepath.Join(f.dir, job)
	fi, err := os.Stat(filepath.Join(d, "step"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	step := readStep(d)
	raw, _ := os.ReadFile(filepath.Join(d, "steps"))
	steps, _ := strconv.ParseInt(string(raw), 10, 64)
	return &CheckpointInfo{Step: step, Path: fmt.Sprintf("checkpoints/%s/%012d/", job, step), Time: fi.ModTime(), Loss: 1 / float64(step+1), Final: step >= steps}, nil
}
